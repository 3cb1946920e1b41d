package policy

// Deprecations lists, in words, the keys of the policy file that are accepted for compatibility
// but have no effect, so that the daemon and `cosigner policy check` can warn about them.
//
// limits.release_after (an earlier model released a signed transaction's reservation when its
// inputs were still unspent that long after signing) is ignored rather than refused: ignoring it
// can only make the co-signer count more, never sign more, and refusing it would stop a
// co-signer whose file still has it from starting after an upgrade.
func (p *Policy) Deprecations() []string {
	var out []string
	if p.Limits.ReleaseAfter != 0 {
		out = append(out, "limits.release_after ("+FormatDuration(p.Limits.ReleaseAfter)+") is ignored: a signed transaction counts "+
			"against the velocity windows until it confirms or one of its inputs is spent by another confirmed transaction, "+
			"never released by time; remove the key (docs/spend-exposure.md)")
	}
	return out
}
