package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/policy"
)

// The pair's policy texts, expanded, are valid policies of the current language (no network
// needed): a drift of the policy language shows here rather than as a daemon that will not start.
func TestPairPoliciesParse(t *testing.T) {
	vault, err := descriptor.Parse("wsh(sortedmulti(2,[e2867bb6/48h/1h/0h/2h]tpubDFmMwTXpkvHSSZdwNYkf8rmq4WBLrn4sgpijxznXLY7NgUtWapXZj8UE4ciG4G5m57X1n4qaFmTi2M7W2ZbrdFL9o2qArr6fBGsbkUSB2JC/<0;1>/*,[adc4083b/48h/1h/0h/2h]tpubDEPbFA3jaN62veY6m2mFDSpKcHcGBzd2mW8nhMJDZUSzcq5tZYeK3pzebKd3yuEEQELcMidfCjx7vUcDSnEha3TtFx6P926ZqgxuQLQt9CN/<0;1>/*,[e89702d2/48h/1h/0h/2h]tpubDE9yHu4U5JUifgdVakerLrYz9wavQRbNqhvHW1SNhqJULbgesujbzigDmDVBGgNs9BjCnxQvet2aue18rBTi5M3ZGWKevGyBEAGnPo33RM4/<0;1>/*))#4pyf2g3h",
		&chaincfg.RegressionNetParams, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	pkA, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pkB, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	p := &Pair{A: &Daemon{Key: keystore.PublicInfo{NostrPubKey: pkA}}, B: &Daemon{Key: keystore.PublicInfo{NostrPubKey: pkB}},
		Vault: vault, BunkerB: "bunker://" + pkB + "?relay=ws%3A%2F%2F127.0.0.1%3A7000&secret=0123456789abcdef"}
	for name, doc := range map[string]string{
		"A default":  SweepPolicyA(SweepOptions{}),
		"A fee bump": SweepPolicyA(SweepOptions{BumpAfter: 2, TargetBlocks: 1, MaxFeeRate: "60 sat/vB", Timeout: "30s"}),
		"B":          CosignerPolicyB("1 BTC"),
		"B holding":  CosignerPolicyB("0.1 BTC") + "rules:\n  - {name: cooling, action: hold, hold: {cooling_off: 20s}}\n",
	} {
		text := p.Expand(doc)
		if strings.Contains(text, "${") {
			t.Errorf("%s: placeholder left in %q", name, text)
		}
		pol, err := policy.Parse(name, []byte(text), policy.WithNetwork(&chaincfg.RegressionNetParams))
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, text)
			continue
		}
		if strings.HasPrefix(name, "A") {
			if len(pol.Automations) != 1 || pol.Automations[0].Name != "sweep_deposits" ||
				len(pol.Automations[0].Cosigners) != 1 || pol.Automations[0].Cosigners[0] != p.BunkerB {
				t.Errorf("%s: automations %+v", name, pol.Automations)
			}
		}
	}
}

func TestForTriggerAndEvents(t *testing.T) {
	op := wire.OutPoint{Index: 3}
	op.Hash[0] = 0xab
	pr := Proposal{Trigger: "funding_confirmed:" + op.String(), State: "broadcast", Timeline: []ProposalEvent{
		{At: time.Unix(1, 0), Event: "requested"}, {At: time.Unix(2, 0), Event: "answered"}, {At: time.Unix(3, 0), Event: "requested"}}}
	if !ForTrigger(op)(pr) || !ForTrigger(op, "confirmed", "broadcast")(pr) || ForTrigger(op, "confirmed")(pr) {
		t.Errorf("ForTrigger on %+v", pr)
	}
	for _, idx := range []uint32{4, 13, 33} {
		other := op
		other.Index = idx
		if ForTrigger(other)(pr) || ForTrigger(op)(Proposal{Trigger: "funding_confirmed:" + other.String()}) {
			t.Errorf("ForTrigger confused %s and %s", op, other)
		}
	}
	if ev := pr.Events("requested"); len(ev) != 2 || !ev[1].At.Equal(time.Unix(3, 0)) {
		t.Errorf("Events(requested) = %+v", ev)
	}
}
