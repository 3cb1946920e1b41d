package psbtflow

import (
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
)

// Limits bound what one request, and the held requests together, can cost the co-signer in
// CPU, memory and disk, whoever sends them. They are resource bounds of the daemon, not
// spending policy: the daemon sets them from COSIGNER_MAX_PSBT_INPUTS and friends (see
// docs/bounds.md). A zero field takes its default.
type Limits struct {
	// MaxPSBTBytes bounds the decoded PSBT (default and ceiling psbt.MaxPSBTBytes, 64 KiB). Checked
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
	DefaultMaxInputs         = psbt.DefaultMaxInputs
	DefaultMaxOutputs        = psbt.DefaultMaxOutputs
	DefaultAuditDestinations = 10
	DefaultMaxHoldsPerClient = 20
	DefaultMaxHolds          = 200
)

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{MaxPSBTBytes: psbt.MaxPSBTBytes, MaxInputs: DefaultMaxInputs, MaxOutputs: DefaultMaxOutputs,
		AuditDestinations: DefaultAuditDestinations, MaxHoldsPerClient: DefaultMaxHoldsPerClient, MaxHolds: DefaultMaxHolds}
}

// withDefaults fills zero fields with their defaults and caps MaxPSBTBytes at psbt.MaxPSBTBytes.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	pl := l.psbtLimits().WithDefaults()
	l.MaxPSBTBytes, l.MaxInputs, l.MaxOutputs = pl.MaxPSBTBytes, pl.MaxInputs, pl.MaxOutputs
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

// psbtLimits returns the bounds the psbt package checks (text size, inputs, outputs).
func (l Limits) psbtLimits() psbt.Limits {
	return psbt.Limits{MaxPSBTBytes: l.MaxPSBTBytes, MaxInputs: l.MaxInputs, MaxOutputs: l.MaxOutputs}
}

// WithLimits sets the Service's resource bounds (zero fields: defaults).
func WithLimits(l Limits) Option { return func(s *Service) { s.limits = l.withDefaults() } }

// errTooManyHolds is the answer to a request the policy would hold while the caps are reached.
func errTooManyHolds(mine, all int, l Limits) error {
	if mine >= l.MaxHoldsPerClient {
		return nip46.Errorf(nip46.CodeRateLimited, "this client already has %d held requests waiting (the most this co-signer keeps per client); cancel one or wait for one to end, then ask again under a new id", mine)
	}
	return nip46.Errorf(nip46.CodeRateLimited, "%d held requests are waiting (the most this co-signer keeps); ask again under a new id once some have ended", all)
}
