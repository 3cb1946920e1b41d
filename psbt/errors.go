package psbt

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
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

// Builder errors.
var (
	// ErrPayment means a payment has no usable script: no address and no script, both, or an
	// address of another network.
	ErrPayment = errors.New("psbt: invalid payment")
	// ErrForeignCoin means a selected coin's script is not the registered descriptor's at the
	// coin's (branch, index).
	ErrForeignCoin = errors.New("psbt: selected coin is not the wallet's")
	// ErrPrevTx means the previous transaction fetched for non_witness_utxo does not hash to
	// the input's txid or does not carry the coin's value and script at its index.
	ErrPrevTx = errors.New("psbt: previous transaction does not match the coin")
	// ErrUnsupportedDescriptor means Build cannot write the PSBT fields this descriptor's
	// inputs need (a derived output with neither a witness script nor a taproot tree).
	ErrUnsupportedDescriptor = errors.New("psbt: the builder does not support this descriptor")
	// ErrSelectionMismatch means the selection was computed for other outputs than the ones
	// given to Build (its amounts or vsize do not add up).
	ErrSelectionMismatch = errors.New("psbt: selection does not match the payments")
)

// Coin selection errors. Insufficient funds comes as *InsufficientFundsError, which wraps
// ErrInsufficientFunds.
var (
	// ErrInsufficientFunds means the candidate coins cannot pay the target and the fee.
	ErrInsufficientFunds = errors.New("psbt: insufficient funds")
	// ErrSelectParams means SelectParams are incomplete or inconsistent (a caller bug).
	ErrSelectParams = errors.New("psbt: invalid coin selection parameters")
	// ErrFeeRate means the feerate is not a finite number of at least 0 sat/vB (or is absurd:
	// above MaxFeeRate).
	ErrFeeRate = errors.New("psbt: invalid feerate")
	// ErrDustOutput means a payment, or the sweep's reserve, is below the output's dust limit
	// (DustThreshold): nodes would not relay the transaction.
	ErrDustOutput = errors.New("psbt: output below the dust limit")
	// ErrTooManyInputs means the wallet holds enough, but only in more coins than one standard
	// transaction can spend (SelectParams.MaxWeight): consolidate first (a sweep to itself).
	ErrTooManyInputs = errors.New("psbt: paying this needs more inputs than a standard transaction holds")
)

// InsufficientFundsError says how much the candidate coins lack.
type InsufficientFundsError struct {
	// Available is the value of the coins worth spending at the feerate (effective value > 0).
	Available btcutil.Amount
	// Needed is the target plus the fee of spending all of them (no change output).
	Needed btcutil.Amount
	// Missing is Needed − Available: how much more the wallet must receive.
	Missing btcutil.Amount
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("psbt: insufficient funds: need %s (amount and fee), have %s worth spending at this feerate, missing %s",
		e.Needed, e.Available, e.Missing)
}

// Unwrap makes errors.Is(err, ErrInsufficientFunds) true.
func (e *InsufficientFundsError) Unwrap() error { return ErrInsufficientFunds }

// Combiner and Finalizer errors.
var (
	// ErrCombine means PSBTs cannot be combined: they are for different unsigned transactions,
	// or they carry different values for the same key (a partial signature, script, UTXO or
	// derivation that disagrees).
	ErrCombine = errors.New("psbt: PSBTs cannot be combined")
	// ErrInputUnresolved means a PSBT input cannot be tied to the registered descriptor: no
	// witness UTXO (or a non_witness_utxo that does not hash to the input's txid), or no BIP32
	// derivation of the wallet's keys that re-derives the script it spends.
	ErrInputUnresolved = errors.New("psbt: input is not the wallet's")
	// ErrTooFewSignatures means some input has fewer valid partial signatures than the
	// multisig threshold.
	ErrTooFewSignatures = errors.New("psbt: not enough valid partial signatures")
	// ErrFinalize means the finalized transaction does not verify (txscript's engine refused an
	// input's witness) or btcutil's finalizer refused the input.
	ErrFinalize = errors.New("psbt: PSBT cannot be finalized")
)
