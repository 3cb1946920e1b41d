package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
)

const channelDoc = `version: 1
clients:
  - name: coordinator
    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798
  - name: electrum
    channel: electrum_nostr
    rate_limit: 5/1h
limits:
  max_per_tx: 1 BTC
rules:
  - name: electrum_small
    match: {clients: [electrum], max_outflow: 0.01 BTC}
    action: allow
  - name: electrum_rest
    match: {clients: [electrum]}
    action: deny
    reason: Electrum's channel is unauthenticated
`

// TestChannelClient: a client entry with channel: electrum_nostr authorises that channel for
// sign_psbt only, rules match it by name, its rate limit applies, and a policy without the
// entry does not enable it.
func TestChannelClient(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	p, err := Parse("p.yaml", []byte(channelDoc))
	if err != nil {
		t.Fatal(err)
	}
	if !ChannelEnabled(p, ChannelElectrumNostr, now) {
		t.Fatal("the channel entry does not enable the channel")
	}
	if d := Authorize(p, ChannelElectrumNostr, "get_wallet", now); d.Outcome != Unauthorized {
		t.Fatalf("a channel may call get_wallet: %+v", d)
	}
	if rs := p.RateLimits(ChannelElectrumNostr, now); len(rs) != 1 || rs[0].Count != 5 || rs[0].Per != time.Hour {
		t.Fatalf("rate limits %+v", rs)
	}
	small := Input{Client: ChannelElectrumNostr, Method: "sign_psbt", Now: now, Outflow: btcutil.Amount(500_000)}
	if d := Evaluate(p, small); d.Outcome != Allow || d.Rule != "electrum_small" {
		t.Fatalf("small: %+v", d)
	}
	big := small
	big.Outflow = btcutil.Amount(5_000_000)
	if d := Evaluate(p, big); d.Outcome != Deny || d.Rule != "electrum_rest" {
		t.Fatalf("big: %+v", d)
	}
	// The same PSBT from the NIP-46 coordinator matches no electrum rule.
	coord := big
	coord.Client = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
	if d := Evaluate(p, coord); strings.HasPrefix(d.Rule, "electrum") {
		t.Fatalf("coordinator: %+v", d)
	}

	off, err := Parse("p.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ChannelEnabled(off, ChannelElectrumNostr, now) || ChannelEnabled(nil, ChannelElectrumNostr, now) {
		t.Fatal("a policy without the channel entry enables it")
	}
	if ChannelEnabled(p, "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", now) {
		t.Fatal("a NIP-46 client pubkey is taken for a channel")
	}
}

// TestChannelClientErrors: each malformed channel entry is refused with its line and words.
func TestChannelClientErrors(t *testing.T) {
	head := "version: 1\nclients:\n"
	tail := "limits:\n  max_per_tx: 1 BTC\n"
	for _, c := range []struct{ name, clients, want string }{
		{"both", "  - channel: electrum_nostr\n    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\n", "either a pubkey"},
		{"unknown", "  - channel: sparrow_nostr\n", `unknown channel "sparrow_nostr"`},
		{"method", "  - channel: electrum_nostr\n    methods: [sign_psbt, get_wallet]\n", "can only ask for signatures"},
		{"twice", "  - channel: electrum_nostr\n  - name: b\n    channel: electrum_nostr\n", "listed twice"},
		{"neither", "  - name: x\n", "or a channel"},
		{"pubkey named like a channel", "  - pubkey: electrum_nostr\n", "pubkey:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(head+c.clients+tail))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "p.yaml:") {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	// The default name is the channel's.
	p, err := Parse("p.yaml", []byte(head+"  - channel: electrum_nostr\n"+tail))
	if err != nil {
		t.Fatal(err)
	}
	if p.Clients[0].Name != ChannelElectrumNostr || p.Clients[0].PubKey != ChannelElectrumNostr {
		t.Fatalf("client %+v", p.Clients[0])
	}
}

// TestChannelAddedIsLoosening: enabling the channel loosens the policy, so under loosen_delay
// it waits: until the new policy applies alone the channel stays off.
func TestChannelAddedIsLoosening(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	prev, err := Parse("a.yaml", []byte("version: 1\nloosen_delay: 7d\nclients:\n  - name: coordinator\n    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse("b.yaml", []byte("version: 1\nloosen_delay: 7d\nclients:\n  - name: coordinator\n    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\n  - name: electrum\n    channel: electrum_nostr\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := Loosenings(prev, next)
	if len(l) != 1 || !strings.Contains(l[0], `"electrum" added`) {
		t.Fatalf("loosenings %v", l)
	}
	pending := next.WithPrior(prev, now.Add(7*24*time.Hour))
	if ChannelEnabled(pending, ChannelElectrumNostr, now) {
		t.Fatal("the channel is on before the loosening applies alone")
	}
	if !ChannelEnabled(pending, ChannelElectrumNostr, now.Add(8*24*time.Hour)) {
		t.Fatal("the channel is off after the loosening applies")
	}
}
