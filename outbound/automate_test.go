package outbound

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
)

func op(b byte, i uint32) wire.OutPoint { return wire.OutPoint{Hash: chainhash.Hash{b}, Index: i} }

func keys(fs []Firing) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Automation+" "+f.TriggerKey)
	}
	return out
}

var autos = []policy.Automation{
	{Name: "seen", Trigger: policy.Trigger{Kind: policy.TriggerFundingSeen}},
	{Name: "conf1", Trigger: policy.Trigger{Kind: policy.TriggerFundingConfirmed, Confirmations: 1}},
	{Name: "conf3", Trigger: policy.Trigger{Kind: policy.TriggerFundingConfirmed, Confirmations: 3}},
	{Name: "rich", Trigger: policy.Trigger{Kind: policy.TriggerBalanceAbove, Balance: 100_000}},
	{Name: "daily", Trigger: policy.Trigger{Kind: policy.TriggerSchedule, Every: 24 * time.Hour}},
}

func TestFundingFirings(t *testing.T) {
	recv := chainwatch.UTXO{OutPoint: op(1, 0), Value: 50_000, Branch: 0}
	change := chainwatch.UTXO{OutPoint: op(2, 1), Value: 50_000, Branch: 1}
	o := recv.OutPoint.String()
	for _, tc := range []struct {
		name string
		ev   chainwatch.Event
		want []string
	}{
		{"seen", chainwatch.FundingSeen{UTXO: recv}, []string{"seen funding_seen:" + o}},
		{"first confirmation", chainwatch.FundingConfirmed{UTXO: recv, Confs: 1}, []string{"seen funding_seen:" + o, "conf1 funding_confirmed:" + o}},
		{"found already deep", chainwatch.FundingConfirmed{UTXO: recv, Confs: 5}, []string{"seen funding_seen:" + o, "conf1 funding_confirmed:" + o, "conf3 funding_confirmed:" + o}},
		{"change never fires", chainwatch.FundingConfirmed{UTXO: change, Confs: 5}, nil},
		{"change seen never fires", chainwatch.FundingSeen{UTXO: change}, nil},
		{"spent fires nothing", chainwatch.Spent{OutPoint: recv.OutPoint, UTXO: recv}, nil},
	} {
		if got := keys(FundingFirings(autos, tc.ev)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// The same event again gives the same keys (the store makes them one proposal).
	a := FundingFirings(autos, chainwatch.FundingConfirmed{UTXO: recv, Confs: 1})
	b := FundingFirings(autos, chainwatch.FundingConfirmed{ID: 9, UTXO: recv, Confs: 1})
	if !slices.Equal(keys(a), keys(b)) || ProposalID(a[0].Automation, a[0].TriggerKey) != ProposalID(b[0].Automation, b[0].TriggerKey) {
		t.Fatal("the same event fired different keys")
	}
	if got, ok := FundingOutPoint(a[1].TriggerKey); !ok || got != recv.OutPoint {
		t.Fatalf("FundingOutPoint(%q) = %v %v", a[1].TriggerKey, got, ok)
	}
	if _, ok := FundingOutPoint("schedule:1"); ok {
		t.Fatal("a schedule key names no outpoint")
	}
}

func TestDeepFundingFirings(t *testing.T) {
	tip := chainwatch.Tip{Height: 110}
	utxos := []chainwatch.UTXO{
		{OutPoint: op(1, 0), Branch: 0, Height: 108}, // 3 confirmations
		{OutPoint: op(2, 0), Branch: 0, Height: 109}, // 2
		{OutPoint: op(3, 0), Branch: 1, Height: 100}, // change
		{OutPoint: op(4, 0), Branch: 0, Height: 90},  // 21: older than the catch-up window
		{OutPoint: op(5, 0), Branch: 0},              // mempool
	}
	got := keys(DeepFundingFirings(autos, utxos, tip))
	if want := []string{"conf3 funding_confirmed:" + op(1, 0).String()}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

func TestBalanceFirings(t *testing.T) {
	tip := chainwatch.Tip{Height: 110}
	utxos := []chainwatch.UTXO{
		{OutPoint: op(1, 0), Value: 60_000, Height: 100},
		{OutPoint: op(2, 0), Value: 50_000, Height: 105},
		{OutPoint: op(3, 0), Value: 500_000},                              // unconfirmed: not counted
		{OutPoint: op(4, 0), Value: 500_000, Height: 100, Coinbase: true}, // immature
	}
	f := BalanceFirings(autos, utxos, nil, tip)
	if len(f) != 1 || f[0].Automation != "rich" {
		t.Fatalf("%v", keys(f))
	}
	// Another tip, same coins: the same key (no second proposal); other coins: another key.
	if g := BalanceFirings(autos, slices.Clone(utxos[:2]), nil, chainwatch.Tip{Height: 111}); g[0].TriggerKey != f[0].TriggerKey {
		t.Fatal("same coins, another key")
	}
	more := append(slices.Clone(utxos), chainwatch.UTXO{OutPoint: op(6, 0), Value: 1_000, Height: 110})
	if g := BalanceFirings(autos, more, nil, tip); g[0].TriggerKey == f[0].TriggerKey {
		t.Fatal("new coins, same key")
	}
	// Coins taken by a live proposal do not count: below the threshold.
	if g := BalanceFirings(autos, utxos, map[wire.OutPoint]string{op(1, 0): "p"}, tip); len(g) != 0 {
		t.Fatalf("taken coins counted: %v", keys(g))
	}
}

func TestScheduleFirings(t *testing.T) {
	started := time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)
	if got := ScheduleFirings(autos, started.Add(time.Hour), started); len(got) != 0 {
		t.Fatalf("fired within the start's slot: %v", keys(got))
	}
	next := time.Date(2026, 11, 22, 0, 0, 5, 0, time.UTC)
	got := ScheduleFirings(autos, next, started)
	if want := []string{"daily schedule:" + strconv.FormatInt(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).Unix(), 10)}; !slices.Equal(keys(got), want) {
		t.Fatalf("%v, want %v", keys(got), want)
	}
	if ScheduleSlot(next, 24*time.Hour) != time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) {
		t.Fatal("slot")
	}
}

func TestAutomationFeeRate(t *testing.T) {
	a := policy.Automation{Fee: policy.FeeStrategy{MaxFeeRate: 20, Fallback: 4}}
	for _, tc := range []struct {
		est   electrum.FeeEstimate
		limit policy.FeeRate
		want  psbt.FeeRate
	}{
		{electrum.FeeEstimate{Rate: 7, Estimated: true}, 0, 7},
		{electrum.FeeEstimate{Rate: 7}, 0, 4},                     // no estimate: fallback
		{electrum.FeeEstimate{Rate: 70, Estimated: true}, 0, 20},  // automation's cap
		{electrum.FeeEstimate{Rate: 70, Estimated: true}, 10, 10}, // policy's cap is lower
		{electrum.FeeEstimate{Rate: 0.2, Estimated: true}, 0, 1},
	} {
		if got := AutomationFeeRate(a, tc.est, tc.limit); got != tc.want {
			t.Errorf("AutomationFeeRate(%+v, %v) = %v, want %v", tc.est, tc.limit, got, tc.want)
		}
	}
	if got := FeeCeiling(policy.Automation{}, 0); got != 100 {
		t.Errorf("default ceiling %v", got)
	}
}

func TestBumpFeeRate(t *testing.T) {
	for _, tc := range []struct {
		old, est, ceiling, want psbt.FeeRate
		ok                      bool
	}{
		{3, 3, 50, 4, true},      // at least old + incremental relay feerate
		{10, 3, 50, 12.5, true},  // 1.25 × old
		{3, 9, 50, 9, true},      // the new estimate
		{10, 30, 20, 20, true},   // capped
		{20, 30, 20, 0, false},   // nothing left under the cap
		{19.5, 30, 20, 0, false}, // old + 1 is above the cap
	} {
		got, ok := BumpFeeRate(tc.old, tc.est, tc.ceiling)
		if got != tc.want || ok != tc.ok {
			t.Errorf("BumpFeeRate(%v, %v, %v) = %v %v, want %v %v", tc.old, tc.est, tc.ceiling, got, ok, tc.want, tc.ok)
		}
	}
}
