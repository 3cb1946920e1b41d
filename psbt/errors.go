package psbt

import (
	"errors"
	"fmt"
)

// RefusalCode says why a PSBT is refused, in the PSBT's own terms. The layer that answers a
// client maps each code to its wire vocabulary (psbtflow maps them to NIP-46 error codes).
type RefusalCode string

// Refusal codes. The words are the PSBT's problem, not a transport's.
const (
	// InvalidPSBT: the bytes are not a well-formed PSBT (BIP-174 v0 or BIP-370 v2), or the
	// transaction they describe is impossible (no inputs or outputs, a duplicated input, an
	// output value out of range, outputs worth more than inputs).
	InvalidPSBT RefusalCode = "invalid_psbt"
	// TooLarge: the PSBT is larger than the bytes this co-signer reads (MaxPSBTBytes, or a
	// lower Limits.MaxPSBTBytes).
	TooLarge RefusalCode = "too_large"
	// TooManyInputs and TooManyOutputs: the PSBT has more inputs or outputs than Limits allow.
	TooManyInputs  RefusalCode = "too_many_inputs"
	TooManyOutputs RefusalCode = "too_many_outputs"
	// NotOurWallet: an input is not an unspent output of the registered descriptor.
	NotOurWallet RefusalCode = "not_our_wallet"
	// UnsafePSBT: a well-formed PSBT of the wallet that this co-signer must not sign; the
	// Detail starts with the check that failed ("input_amount: …", see Analyze).
	UnsafePSBT RefusalCode = "unsafe_psbt"
)

// Refusal is a PSBT this package will not accept, with words for people in Detail. Decode,
// Analyze and Limits return it (as *Refusal); errors.As finds it through wrapping. Error() is
// "code: detail".
type Refusal struct {
	Code   RefusalCode
	Detail string
}

func (r *Refusal) Error() string { return string(r.Code) + ": " + r.Detail }

// refuse builds a *Refusal with a formatted Detail.
func refuse(code RefusalCode, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// AsRefusal returns the *Refusal in err's chain, or nil when err is not a refusal (an internal
// failure).
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// ErrNotOurKey means the key source does not hold the descriptor key slot's key, or derives a
// key that is not in the descriptor's script (SignInputs).
var ErrNotOurKey = errors.New("psbt: not this co-signer's key")
