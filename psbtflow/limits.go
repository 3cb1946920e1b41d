package psbtflow

import (
	"strings"

	"github.com/btcsuite/btcd/btcutil/psbt"

	"github.com/custodyagents/cosigner/signer"
)

// Limits bound what one request, and the held requests together, can cost the co-signer in
// CPU, memory and disk, whoever sends them. They are resource bounds of the daemon, not
// spending policy: the daemon sets them from COSIGNER_MAX_PSBT_INPUTS and friends (see
// docs/bounds.md). A zero field takes its default.
type Limits struct {
	// MaxPSBTBytes bounds the decoded PSBT (default and ceiling MaxPSBTBytes, 64 KiB). Checked
	// on the request's text before it is decoded.
	MaxPSBTBytes int
	// MaxInputs and MaxOutputs bound a PSBT's inputs and outputs (default 500 each). Checked
	// right after decoding, before the PSBT is analysed.
	MaxInputs, MaxOutputs int
	// AuditDestinations is how many destinations (the largest spend outputs) an audit entry
	// names; the others are summed (default 10).
	AuditDestinations int
	// MaxHoldsPerClient and MaxHolds bound the held requests waiting at once, per client and
	// in all (default 20 and 200). A request the policy would hold past either cap is refused
	// with rate_limited.
	MaxHoldsPerClient, MaxHolds int
}

// Default limits (see Limits).
const (
	DefaultMaxInputs         = 500
	DefaultMaxOutputs        = 500
	DefaultAuditDestinations = 10
	DefaultMaxHoldsPerClient = 20
	DefaultMaxHolds          = 200
)

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{MaxPSBTBytes: MaxPSBTBytes, MaxInputs: DefaultMaxInputs, MaxOutputs: DefaultMaxOutputs,
		AuditDestinations: DefaultAuditDestinations, MaxHoldsPerClient: DefaultMaxHoldsPerClient, MaxHolds: DefaultMaxHolds}
}

// withDefaults fills zero fields with their defaults and caps MaxPSBTBytes at MaxPSBTBytes.
func (l Limits) withDefaults() Limits {
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
	if l.AuditDestinations <= 0 {
		l.AuditDestinations = d.AuditDestinations
	}
	if l.MaxHoldsPerClient <= 0 {
		l.MaxHoldsPerClient = d.MaxHoldsPerClient
	}
	if l.MaxHolds <= 0 {
		l.MaxHolds = d.MaxHolds
	}
	return l
}

// WithLimits sets the Service's resource bounds (zero fields: defaults).
func WithLimits(l Limits) Option { return func(s *Service) { s.limits = l.withDefaults() } }

// checkText refuses a PSBT text that stands for more than MaxPSBTBytes (invalid_psbt), before
// it is decoded: base64 is 4/3 of the bytes, hex twice.
func (l Limits) checkText(s string) error {
	s = strings.TrimSpace(s)
	limit := l.MaxPSBTBytes*4/3 + 4
	if strings.HasPrefix(strings.ToLower(s[:min(len(s), 10)]), "70736274ff") {
		limit = l.MaxPSBTBytes * 2
	}
	if len(s) > limit {
		return signer.Errorf(signer.CodeInvalidPSBT, "PSBT is larger than %d bytes, the most this co-signer accepts", l.MaxPSBTBytes)
	}
	return nil
}

// checkCounts refuses a PSBT with more inputs or outputs than the limits allow (unsafe_psbt),
// before it is analysed: the analysis, the policy's per-output checks and the audit entry all
// grow with them.
func (l Limits) checkCounts(p *psbt.Packet) error {
	if n := len(p.UnsignedTx.TxIn); n > l.MaxInputs {
		return signer.Errorf(signer.CodeUnsafePSBT, "PSBT has %d inputs; this co-signer signs at most %d per PSBT", n, l.MaxInputs)
	}
	if n := len(p.UnsignedTx.TxOut); n > l.MaxOutputs {
		return signer.Errorf(signer.CodeUnsafePSBT, "PSBT has %d outputs; this co-signer signs at most %d per PSBT", n, l.MaxOutputs)
	}
	return nil
}

// errTooManyHolds is the answer to a request the policy would hold while the caps are reached.
func errTooManyHolds(mine, all int, l Limits) error {
	if mine >= l.MaxHoldsPerClient {
		return signer.Errorf(signer.CodeRateLimited, "this client already has %d held requests waiting (the most this co-signer keeps per client); cancel one or wait for one to end, then ask again under a new id", mine)
	}
	return signer.Errorf(signer.CodeRateLimited, "%d held requests are waiting (the most this co-signer keeps); ask again under a new id once some have ended", all)
}
