package daemon

import (
	"context"

	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/store"
)

// policyVersions adapts the store to policyfile.VersionStore (policy versions across restarts).
type policyVersions struct{ db *store.DB }

func (v policyVersions) PutVersion(ctx context.Context, pv policy.Version) error {
	return v.db.PutPolicyVersion(ctx, store.PolicyVersion{Hash: pv.Hash, Name: pv.Name, Body: pv.Body, SeenAt: pv.SeenAt, EffectiveAt: pv.EffectiveAt})
}

func (v policyVersions) Versions(ctx context.Context) ([]policy.Version, error) {
	rows, err := v.db.PolicyVersions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Version, len(rows))
	for i, r := range rows {
		out[i] = policy.Version{Hash: r.Hash, Name: r.Name, Body: r.Body, SeenAt: r.SeenAt, EffectiveAt: r.EffectiveAt}
	}
	return out, nil
}
