package psbt

import (
	"strings"

	"github.com/btcsuite/btcd/btcutil/psbt"
)

// Limits bound what one PSBT may cost to read and analyse, whoever sends it: resource bounds,
// not spending policy. A zero field takes its default (WithDefaults).
type Limits struct {
	// MaxPSBTBytes bounds the decoded PSBT (default and ceiling MaxPSBTBytes, 64 KiB).
	MaxPSBTBytes int
	// MaxInputs and MaxOutputs bound a PSBT's inputs and outputs (default 500 each).
	MaxInputs, MaxOutputs int
}

// Default limits (see Limits).
const (
	DefaultMaxInputs  = 500
	DefaultMaxOutputs = 500
)

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{MaxPSBTBytes: MaxPSBTBytes, MaxInputs: DefaultMaxInputs, MaxOutputs: DefaultMaxOutputs}
}

// WithDefaults fills zero fields with their defaults and caps MaxPSBTBytes at MaxPSBTBytes.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxPSBTBytes <= 0 || l.MaxPSBTBytes > MaxPSBTBytes {
		l.MaxPSBTBytes = d.MaxPSBTBytes
	}
	if l.MaxInputs <= 0 {
		l.MaxInputs = d.MaxInputs
	}
	if l.MaxOutputs <= 0 {
		l.MaxOutputs = d.MaxOutputs
	}
	return l
}

// CheckText refuses a PSBT text that stands for more than MaxPSBTBytes (*Refusal TooLarge),
// before it is decoded: base64 is 4/3 of the bytes, hex twice.
func (l Limits) CheckText(s string) error {
	s = strings.TrimSpace(s)
	limit := l.MaxPSBTBytes*4/3 + 4
	if strings.HasPrefix(strings.ToLower(s[:min(len(s), 10)]), "70736274ff") {
		limit = l.MaxPSBTBytes * 2
	}
	if len(s) > limit {
		return refuse(TooLarge, "PSBT is larger than %d bytes, the most this co-signer accepts", l.MaxPSBTBytes)
	}
	return nil
}

// CheckCounts refuses a PSBT with more inputs or outputs than the limits allow (*Refusal
// TooManyInputs or TooManyOutputs), before it is analysed: the analysis, a policy's per-output
// checks and an audit entry all grow with them.
func (l Limits) CheckCounts(p *psbt.Packet) error {
	if n := len(p.UnsignedTx.TxIn); n > l.MaxInputs {
		return refuse(TooManyInputs, "PSBT has %d inputs; this co-signer signs at most %d per PSBT", n, l.MaxInputs)
	}
	if n := len(p.UnsignedTx.TxOut); n > l.MaxOutputs {
		return refuse(TooManyOutputs, "PSBT has %d outputs; this co-signer signs at most %d per PSBT", n, l.MaxOutputs)
	}
	return nil
}
