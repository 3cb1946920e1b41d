package policyfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/policy"
)

type memVersions struct{ vs []policy.Version }

func (m *memVersions) PutVersion(_ context.Context, v policy.Version) error {
	for i, x := range m.vs {
		if x.Hash == v.Hash {
			m.vs = append(m.vs[:i], m.vs[i+1:]...)
			break
		}
	}
	m.vs = append(m.vs, v)
	return nil
}
func (m *memVersions) Versions(context.Context) ([]policy.Version, error) {
	return append([]policy.Version(nil), m.vs...), nil
}

func reloadDoc(maxPerTx, extra string) string {
	return "version: 1\nloosen_delay: 7d\nclients:\n  - {name: c, pubkey: " + pkA + "}\nlimits:\n  max_per_tx: " + maxPerTx + "\n" + extra
}

// TestReloadTightenNowLoosenLater: a tightening applies at once; a loosening is in force only
// together with the old policy (stricter wins) until loosen_delay has passed, also across a
// restart; a bad file is refused with line:col and the running policy kept.
func TestReloadTightenNowLoosenLater(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := &memVersions{}
	write(reloadDoc("1 BTC", ""))
	r, err := NewReloader(ctx, path, store, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(outflow int64) policy.Outcome {
		return policy.Evaluate(r.Policy(), policy.Input{Client: pkA, Method: "sign_psbt", Now: now, Outflow: btcAmount(outflow)}).Outcome
	}
	if decide(90_000_000) != policy.Allow {
		t.Fatal("0.9 BTC under a 1 BTC cap should be allowed")
	}
	// Tighten: applies at once.
	write(reloadDoc("0.5 BTC", ""))
	if changed, err := r.Reload(ctx); err != nil || !changed {
		t.Fatalf("reload = %v, %v", changed, err)
	}
	if decide(90_000_000) != policy.Deny {
		t.Fatal("a tightened cap must apply at once")
	}
	// Loosen: 2 BTC, only after 7 days; until then the 0.5 BTC cap still holds.
	write(reloadDoc("2 BTC", ""))
	if _, err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if prior, at := r.Policy().Prior(); prior == nil || !at.Equal(now.Add(7*24*time.Hour)) {
		t.Fatalf("loosening should wait until %s, got prior %v at %s", now.Add(7*24*time.Hour), prior != nil, at)
	}
	if d := policy.Evaluate(r.Policy(), policy.Input{Client: pkA, Method: "sign_psbt", Now: now, Outflow: 90_000_000}); d.Outcome != policy.Deny || d.Rule != policy.RuleMaxPerTx {
		t.Fatalf("during the loosen delay: %+v", d)
	}
	// A bad file: refused with line:col, the running policy kept.
	write(reloadDoc("2 BTC", "  max_fees: 1 sat\n"))
	_, err = r.Reload(ctx)
	var es policy.Errors
	if !errors.As(err, &es) || !strings.Contains(err.Error(), "policy.yaml:7:3: unknown key \"max_fees\"") {
		t.Fatalf("bad file: err = %v", err)
	}
	if r.Policy().MaxPerTx() != 200_000_000 {
		t.Fatal("the running policy changed after a refused file")
	}
	if changed, err := r.Reload(ctx); changed || err != nil {
		t.Fatalf("the same bad file again: %v, %v (want it reported once)", changed, err)
	}
	// Restart during the delay: the loosening is still pending.
	write(reloadDoc("2 BTC", ""))
	now = now.Add(24 * time.Hour)
	r2, err := NewReloader(ctx, path, store, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	r = r2
	if decide(90_000_000) != policy.Deny {
		t.Fatal("a restart must not cut the loosen delay short")
	}
	// After the delay the new file applies alone.
	now = now.Add(6*24*time.Hour + time.Second)
	if decide(90_000_000) != policy.Allow {
		t.Fatal("after the loosen delay the loosened policy applies")
	}
}

func btcAmount(sat int64) btcutil.Amount { return btcutil.Amount(sat) }

// TestReloaderRunWatchesTheFile: Run notices a file replaced by rename (as editors save) and
// takes it; a bad file in between is refused and the running policy kept.
func TestReloaderRunWatchesTheFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	replace := func(doc string) {
		tmp := filepath.Join(dir, ".policy.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace(reloadDoc("1 BTC", ""))
	r, err := NewReloader(ctx, path, &memVersions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < 600 && !cond(); i++ { // up to a minute on a loaded machine
			time.Sleep(100 * time.Millisecond)
		}
		if !cond() {
			t.Fatalf("reloader never %s", what)
		}
	}
	bad := reloadDoc("0.1 BTC", "  max_per_tx: 0.2 BTC\n")
	replace(bad)
	good := reloadDoc("0.5 BTC", "")
	replace(good)
	waitFor("took the tightened file", func() bool { return r.Policy().Hash == policy.HashBytes([]byte(good)) })
	if r.Policy().MaxPerTx() != 50_000_000 {
		t.Fatalf("max_per_tx = %v", r.Policy().MaxPerTx())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestReloadAutomations: a new automation is a loosening — the engine does not run it (and
// policy.Evaluate does not authorize its client) until loosen_delay has passed; removing it applies at
// once.
func TestReloadAutomations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	auto := "automations:\n  - name: sweep\n    trigger: {funding_confirmed: 1}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [" + qB + "]\n"
	write(reloadDoc("1 BTC", ""))
	r, err := NewReloader(ctx, path, &memVersions{}, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	write(reloadDoc("1 BTC", auto))
	if changed, err := r.Reload(ctx); err != nil || !changed {
		t.Fatalf("reload = %v, %v", changed, err)
	}
	running := func(at time.Time) int { return len(r.Policy().AutomationsAt(at)) }
	authorized := func(at time.Time) policy.Outcome {
		return policy.Evaluate(r.Policy(), policy.Input{Client: "automation:sweep", Method: "sign_psbt", Now: at, Outflow: 1000}).Outcome
	}
	later := now.Add(7 * 24 * time.Hour)
	if running(now) != 0 || authorized(now) != policy.Unauthorized {
		t.Fatalf("a new automation runs before loosen_delay: %d running, %s", running(now), authorized(now))
	}
	if running(later) != 1 || authorized(later) != policy.Allow {
		t.Fatalf("after loosen_delay: %d running, %s", running(later), authorized(later))
	}
	now = later
	write(reloadDoc("1 BTC", ""))
	if _, err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if prior, _ := r.Policy().Prior(); prior != nil || running(now) != 0 || authorized(now) != policy.Unauthorized {
		t.Fatalf("removing an automation must apply at once (prior %v)", prior != nil)
	}
}
