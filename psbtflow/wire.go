package psbtflow

import (
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
)

// WireError is err as a NIP-46 answer (docs/nip46-clients.md, "Errors"): a *psbt.Refusal takes
// the wire code of its PSBT problem (refusalCodes) with its Detail as the message; a
// *nip46.MethodError stays as it is; anything else is "internal" (nip46.AsMethodError). This
// is the one place where the PSBT layer's refusals meet the wire vocabulary.
func WireError(err error) *nip46.MethodError {
	if r := psbt.AsRefusal(err); r != nil {
		code, ok := refusalCodes[r.Code]
		if !ok {
			code = nip46.CodeInvalidPSBT
		}
		return &nip46.MethodError{Code: code, Message: r.Detail}
	}
	return nip46.AsMethodError(err)
}

// refusalCodes maps each psbt.RefusalCode to the NIP-46 error code a client sees: a PSBT
// larger than allowed is invalid_psbt, too many inputs or outputs unsafe_psbt.
var refusalCodes = map[psbt.RefusalCode]string{
	psbt.InvalidPSBT:    nip46.CodeInvalidPSBT,
	psbt.TooLarge:       nip46.CodeInvalidPSBT,
	psbt.TooManyInputs:  nip46.CodeUnsafePSBT,
	psbt.TooManyOutputs: nip46.CodeUnsafePSBT,
	psbt.NotOurWallet:   nip46.CodeNotOurWallet,
	psbt.UnsafePSBT:     nip46.CodeUnsafePSBT,
}
