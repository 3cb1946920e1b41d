package psbtflow

import (
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/signer"
)

// WireError is err as a NIP-46 answer (docs/nip46-clients.md, "Errors"): a *psbt.Refusal takes
// the wire code of its PSBT problem (refusalCodes) with its Detail as the message; a
// *signer.MethodError stays as it is; anything else is "internal" (signer.AsMethodError). This
// is the one place where the PSBT layer's refusals meet the wire vocabulary.
func WireError(err error) *signer.MethodError {
	if r := psbt.AsRefusal(err); r != nil {
		code, ok := refusalCodes[r.Code]
		if !ok {
			code = signer.CodeInvalidPSBT
		}
		return &signer.MethodError{Code: code, Message: r.Detail}
	}
	return signer.AsMethodError(err)
}

// refusalCodes maps each psbt.RefusalCode to the NIP-46 error code a client sees: a PSBT
// larger than allowed is invalid_psbt, too many inputs or outputs unsafe_psbt.
var refusalCodes = map[psbt.RefusalCode]string{
	psbt.InvalidPSBT:    signer.CodeInvalidPSBT,
	psbt.TooLarge:       signer.CodeInvalidPSBT,
	psbt.TooManyInputs:  signer.CodeUnsafePSBT,
	psbt.TooManyOutputs: signer.CodeUnsafePSBT,
	psbt.NotOurWallet:   signer.CodeNotOurWallet,
	psbt.UnsafePSBT:     signer.CodeUnsafePSBT,
}

// The daemon's keys are the psbt Signer's key source.
var _ psbt.KeySource = (*signer.Keys)(nil)
