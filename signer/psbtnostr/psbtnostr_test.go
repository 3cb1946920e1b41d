package psbtnostr

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// TestChannelKeyVector: the keys of the test wallet's keystore strings (Vpub, as Electrum
// stores a p2wsh testnet keystore) are those computed independently in Python with hashlib
// and electrum-aionostr 0.1.0's PrivateKey:
//
//	sk = hashlib.sha256(("nostr_psbt:" + xpub).encode()).digest()
//	print(sk.hex(), electrum_aionostr.key.PrivateKey(sk).public_key.hex())
func TestChannelKeyVector(t *testing.T) {
	w := wallettest.New(t)
	for i, want := range []struct{ xpub, sk, pk string }{
		{"Vpub5kob2MCBWa6fJL1mhyJr7YbJzmhv1MkeMaM6inMpJ6bQ6tGFCKRmwNi5AgbUNkX2k8yLMcagNERokcENWReJD1EGzrQAcXG6xjSEcciNwEx",
			"ec1cbbc5c4a351af9b1c482d727e4ad15764ce9ea912123457c2d9dc61cb09de", "f7d54ad6a0eec19ec63a2cb0ba2adeca301d80e7d73d6e54d06a67612b4796a3"},
		{"Vpub5mPeph1RG2M7nwVFVFAKw21aPn6jbr9rwRjazU6ec9VQnkMHwFBuWaBxz7soCJB2SJKVnoLBuSXpizDGMT34PG24ARD6MPYRncsY35xNDyk",
			"27ed24f0f1f31e430b350555996bfec99a4575c13806009a0ef567f0e3e69f54", "1d3db3d880328dffc199cbc4b8776c8a4593464686903c4dc4f7797a440b540c"},
	} {
		cw, err := NewWallet(w.Desc, w.Keys[i].AccountXPub())
		if err != nil {
			t.Fatal(err)
		}
		if cw.OwnXPub != want.xpub || cw.OwnSecret != want.sk || cw.OwnPubKey != want.pk {
			t.Fatalf("key %d: got %s %s, want %s %s", i, cw.OwnXPub, cw.OwnPubKey, want.xpub, want.pk)
		}
		if len(cw.Cosigners) != 2 || cw.IsCosigner(cw.OwnPubKey) {
			t.Fatalf("key %d: cosigners %+v", i, cw.Cosigners)
		}
	}
	if _, err := NewWallet(w.Desc, "tpubnotours"); err == nil {
		t.Fatal("a key not in the descriptor was accepted")
	}
}

func TestParseMessage(t *testing.T) {
	for _, c := range []struct {
		in, tx, label string
		bad           bool
	}{
		{in: `{"tx": "70736274ff01"}`, tx: "70736274ff01"},
		{in: `{"tx": "70736274ff01", "label": "rent"}`, tx: "70736274ff01", label: "rent"},
		{in: `{"tx": "70736274ff01", "label": null}`, tx: "70736274ff01"},
		{in: `{"label": "x"}`, bad: true},
		{in: `{"tx": ""}`, bad: true},
		{in: `{"tx": 5}`, bad: true},
		{in: `{"tx": "ab", "label": 7}`, bad: true},
		{in: `70736274ff01`, bad: true}, // Electrum ≤ 4.5's bare hex is not this plugin's format
		{in: `[]`, bad: true},
		{in: ``, bad: true},
	} {
		m, err := ParseMessage(c.in)
		if c.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%q: err %v, want ErrMalformed", c.in, err)
			}
			continue
		}
		if err != nil || m.TX != c.tx || m.Label != c.label {
			t.Errorf("%q: %+v %v", c.in, m, err)
		}
	}
	if got := (Message{TX: "ab"}).Encode(); got != `{"tx":"ab"}` {
		t.Fatalf("encode without label: %s", got)
	}
}

// TestDecryptHostile: content that go-nostr's nip04.Decrypt would panic on, or that is not
// from the claimed author, is an error; a real message round-trips.
func TestDecryptHostile(t *testing.T) {
	a, b := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	apk, _ := nostr.GetPublicKey(a)
	bpk, _ := nostr.GetPublicKey(b)
	ct, err := Encrypt(`{"tx":"00"}`, bpk, a)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Decrypt(ct, apk, b); err != nil || pt != `{"tx":"00"}` {
		t.Fatalf("round trip: %q %v", pt, err)
	}
	c, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	for _, bad := range []struct{ content, from string }{
		{"", apk}, {"abc", apk}, {"AAAA?iv=AAAA", apk}, {"AAAAAAAAAAAAAAAAAAAAAA==?iv=AAAA", apk},
		{"AAA?iv=AAAAAAAAAAAAAAAAAAAAAA==", apk}, {"!!!?iv=AAAAAAAAAAAAAAAAAAAAAA==", apk},
		{ct, c}, {ct, "zz"},
	} {
		if _, err := Decrypt(bad.content, bad.from, b); !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%q from %s: %v", bad.content, bad.from, err)
		}
	}
}

// The harness: the test wallet with cosigner holding key B; Electrum's side holds A (sender)
// and C; a real psbtflow.Service and store; the relays replaced by an in-memory recorder (the
// e2e test crosses real relays with Electrum's own library).
type harness struct {
	t      *testing.T
	w      *wallettest.Wallet
	ch     *Channel
	sender *Wallet // key A's view: its OwnSecret is the Electrum sender's key
	other  *Wallet // key C
	db     *store.DB
	flow   *psbtflow.Service
	pool   *recorder
	now    time.Time
	pol    *policy.Policy
}

type recorder struct {
	mu   sync.Mutex
	sent []nostr.Event
}

func (r *recorder) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	return make(chan relaypool.Event)
}

func (r *recorder) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, ev)
	return []relaypool.PublishResult{{Relay: "ws://recorder"}}
}

func (r *recorder) take() []nostr.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sent
	r.sent = nil
	return s
}

const polDoc = `version: 1
clients:
  - name: electrum
    channel: electrum_nostr
approvers:
  - name: alice
    pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798
limits:
  max_per_tx: 1 BTC
rules:
  - name: electrum_small
    match: {clients: [electrum], max_outflow: 60000 sat}
    action: allow
  - name: electrum_hold
    match: {clients: [electrum], max_outflow: 80000 sat}
    action: hold
    hold: {approvals: 1, approvers: [alice]}
  - name: electrum_rest
    match: {clients: [electrum]}
    action: deny
`

func newHarness(t *testing.T, doc string, replyAll bool) *harness {
	h := &harness{t: t, w: wallettest.New(t), pool: &recorder{}, now: time.Unix(1_800_000_000, 0)}
	var err error
	if doc != "" {
		if h.pol, err = policy.Parse("p.yaml", []byte(doc)); err != nil {
			t.Fatal(err)
		}
	} else if h.pol, err = policy.Parse("p.yaml", []byte("version: 1\nclients: []\nlimits:\n  max_per_tx: 1 BTC\n")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if h.db, err = store.Open(ctx, filepath.Join(t.TempDir(), "c.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.db.Close() })
	clock := func() time.Time { return h.now }
	pol := func() *policy.Policy { return h.pol }
	own, err := NewWallet(h.w.Desc, h.w.Keys[1].AccountXPub())
	if err != nil {
		t.Fatal(err)
	}
	if h.sender, err = NewWallet(h.w.Desc, h.w.Keys[0].AccountXPub()); err != nil {
		t.Fatal(err)
	}
	if h.other, err = NewWallet(h.w.Desc, h.w.Keys[2].AccountXPub()); err != nil {
		t.Fatal(err)
	}
	h.ch, err = New(Config{Wallet: own, Pool: h.pool, Records: h.db, Policy: pol, Now: clock, ReplyToAll: replyAll, Rate: 1000, Burst: 1000,
		Signer: &late{}})
	if err != nil {
		t.Fatal(err)
	}
	h.flow, err = psbtflow.NewService(h.w.Desc, h.w.Keys[1], h.w.Chain, pol, h.db, nil, psbtflow.WithClock(clock), psbtflow.WithResponder(h.ch))
	if err != nil {
		t.Fatal(err)
	}
	h.ch.cfg.Signer.(*late).s = h.flow
	return h
}

// late forwards to the psbtflow.Service made after the Channel (its Responder).
type late struct{ s Signer }

func (l *late) SignPSBT(ctx context.Context, req nip46.Call) (string, error) {
	return l.s.SignPSBT(ctx, req)
}

// message is an event as Electrum's plugin sends it: from the sender's key to cosigner's.
func (h *harness) message(from *Wallet, m Message, at time.Time) *nostr.Event {
	h.t.Helper()
	content, err := Encrypt(m.Encode(), h.ch.cfg.Wallet.OwnPubKey, from.OwnSecret)
	if err != nil {
		h.t.Fatal(err)
	}
	ev := &nostr.Event{Kind: Kind, CreatedAt: nostr.Timestamp(at.Unix()), Tags: Tags(h.ch.cfg.Wallet.OwnPubKey, at), Content: content}
	if err := ev.Sign(from.OwnSecret); err != nil {
		h.t.Fatal(err)
	}
	return ev
}

func (h *harness) psbtHex(pay btcutil.Amount) string {
	op := h.w.AddCoin(h.t, 0, uint32(pay%7), 100_000+pay)
	p := h.w.BuildPSBT(h.t, []wire.OutPoint{op}, pay, 100_000-1_000, 3)
	s, err := psbt.Encode(p, psbt.Hex)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// reply opens an answer as the Electrum side (recipient w) would, returning its message.
func (h *harness) reply(ev nostr.Event, w *Wallet) Message {
	h.t.Helper()
	if ev.Kind != Kind || ev.PubKey != h.ch.cfg.Wallet.OwnPubKey || !hasTag(&ev, "p", w.OwnPubKey) || len(ev.Tags) != 2 || ev.Tags[1][0] != "expiration" {
		h.t.Fatalf("answer event %+v", ev)
	}
	if ok, _ := ev.CheckSignature(); !ok {
		h.t.Fatal("answer signature")
	}
	pt, err := Decrypt(ev.Content, ev.PubKey, w.OwnSecret)
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := ParseMessage(pt)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func partialSigs(t *testing.T, text string) int {
	p, _, err := psbt.Decode(text)
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Inputs[0].PartialSigs)
}

// TestChannelSignsWithinPolicy: a PSBT within the channel's rule is signed and sent back to the
// sender (kind 4, p + expiration, {tx, label}, PSBT hex with cosigner's partial signature); the
// same event again is not decided twice.
func TestChannelSignsWithinPolicy(t *testing.T) {
	h := newHarness(t, polDoc, false)
	ctx := context.Background()
	ev := h.message(h.sender, Message{TX: h.psbtHex(50_000), Label: "rent"}, h.now)
	h.ch.Handle(ctx, ev)
	sent := h.pool.take()
	if len(sent) != 1 {
		t.Fatalf("%d answers, want 1", len(sent))
	}
	m := h.reply(sent[0], h.sender)
	if m.Label != "rent" || !strings.HasPrefix(m.TX, "70736274ff") || partialSigs(t, m.TX) != 1 {
		t.Fatalf("answer %+v", m)
	}
	h.ch.Handle(ctx, ev)
	if len(h.pool.take()) != 0 || h.ch.Drops()["seen"] != 1 || h.ch.Handled() != 1 {
		t.Fatalf("a repeated event was handled again: %v", h.ch.Drops())
	}
}

// TestChannelReplyToAll: with ReplyToAll the answer also goes to the third co-signer.
func TestChannelReplyToAll(t *testing.T) {
	h := newHarness(t, polDoc, true)
	h.ch.Handle(context.Background(), h.message(h.sender, Message{TX: h.psbtHex(50_000)}, h.now))
	sent := h.pool.take()
	if len(sent) != 2 {
		t.Fatalf("%d answers, want 2", len(sent))
	}
	h.reply(sent[0], h.sender)
	if m := h.reply(sent[1], h.other); m.Label != "" || partialSigs(t, m.TX) != 1 {
		t.Fatalf("answer to the other co-signer %+v", m)
	}
}

// TestChannelRefusesOverPolicy: over the channel's rules nothing is answered, and the refusal
// is recorded by psbtflow (a repeated event is not decided again).
func TestChannelRefusesOverPolicy(t *testing.T) {
	h := newHarness(t, polDoc, false)
	h.ch.Handle(context.Background(), h.message(h.sender, Message{TX: h.psbtHex(90_000)}, h.now))
	if len(h.pool.take()) != 0 || h.ch.Handled() != 1 {
		t.Fatal("a refused request was answered")
	}
}

// TestChannelHoldApproved: a held request is answered when an approver approves it through
// psbtflow (NIP-46 approve), to the sender recorded with the event.
func TestChannelHoldApproved(t *testing.T) {
	h := newHarness(t, polDoc, false)
	ctx := context.Background()
	ev := h.message(h.sender, Message{TX: h.psbtHex(70_000), Label: "car"}, h.now)
	h.ch.Handle(ctx, ev)
	if len(h.pool.take()) != 0 {
		t.Fatal("a held request was answered at once")
	}
	rec, ok, err := h.db.ElectrumNostrEventByID(ctx, ev.ID)
	if err != nil || !ok || !rec.Pending {
		t.Fatalf("held event record %+v %v %v", rec, ok, err)
	}
	m, _ := ParseMessage(mustDecrypt(t, ev, h))
	p, _, _ := psbt.Decode(m.TX)
	txid := p.UnsignedTx.TxHash().String()
	// An approver who is not the approver named in the rule changes nothing.
	if _, err := h.flow.Approve(ctx, nip46.Call{Client: strings.Repeat("ab", 32), ID: "a0", Method: "approve", Params: []string{txid, "approve"}}); err == nil {
		t.Fatal("a stranger approved")
	}
	h.flow.Tick(ctx)
	if len(h.pool.take()) != 0 {
		t.Fatal("answered without an approval")
	}
	if _, err := h.flow.Approve(ctx, nip46.Call{Client: alice, ID: "a1", Method: "approve", Params: []string{txid, "approve"}}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	h.flow.Tick(ctx)
	sent := h.pool.take()
	if len(sent) != 1 {
		t.Fatalf("%d late answers, want 1", len(sent))
	}
	if m := h.reply(sent[0], h.sender); m.Label != "car" || partialSigs(t, m.TX) != 1 {
		t.Fatalf("late answer %+v", m)
	}
	if rec, _, _ := h.db.ElectrumNostrEventByID(ctx, ev.ID); rec.Pending {
		t.Fatal("still pending after the answer")
	}
}

const alice = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

func mustDecrypt(t *testing.T, ev *nostr.Event, h *harness) string {
	pt, err := Decrypt(ev.Content, ev.PubKey, h.ch.cfg.Wallet.OwnSecret)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// TestChannelDropsHostile: forged, stale, oversized, undecryptable, malformed and
// not-enabled events are dropped: no decision, no record, no answer.
func TestChannelDropsHostile(t *testing.T) {
	h := newHarness(t, polDoc, false)
	ctx := context.Background()
	good := Message{TX: h.psbtHex(50_000)}
	strangerSK := nostr.GeneratePrivateKey()
	strangerPK, _ := nostr.GetPublicKey(strangerSK)
	stranger := &Wallet{OwnSecret: strangerSK, OwnPubKey: strangerPK}
	garbled := h.message(h.sender, good, h.now)
	garbled.Content = "AAAA?iv=AAAA"
	_ = garbled.Sign(h.sender.OwnSecret)
	notJSON := h.message(h.sender, good, h.now)
	c, _ := Encrypt("70736274ff", h.ch.cfg.Wallet.OwnPubKey, h.sender.OwnSecret)
	notJSON.Content = c
	_ = notJSON.Sign(h.sender.OwnSecret)
	big := h.message(h.sender, Message{TX: strings.Repeat("00", 40_000)}, h.now)
	toOther := h.message(h.sender, good, h.now)
	toOther.Tags = Tags(h.other.OwnPubKey, h.now)
	_ = toOther.Sign(h.sender.OwnSecret)
	for _, c := range []struct {
		name, reason string
		ev           *nostr.Event
	}{
		{"forged sender", "not_cosigner", h.message(stranger, good, h.now)},
		{"own key", "not_cosigner", h.message(&Wallet{OwnSecret: h.ch.cfg.Wallet.OwnSecret}, good, h.now)},
		{"stale", "stale", h.message(h.sender, good, h.now.Add(-KeepDelay-time.Minute))},
		{"future", "stale", h.message(h.sender, good, h.now.Add(KeepDelay+time.Minute))},
		{"oversized", "oversized", big},
		{"undecryptable", "undecryptable", garbled},
		{"malformed", "malformed", notJSON},
		{"not for us", "not_for_us", toOther},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := h.ch.Drops()[c.reason]
			h.ch.Handle(ctx, c.ev)
			if h.ch.Drops()[c.reason] != before+1 {
				t.Fatalf("drops %v, want one more %s", h.ch.Drops(), c.reason)
			}
			if _, ok, _ := h.db.ElectrumNostrEventByID(ctx, c.ev.ID); ok {
				t.Fatal("a dropped event was recorded")
			}
		})
	}
	if h.ch.Handled() != 0 || len(h.pool.take()) != 0 {
		t.Fatal("a hostile event reached the policy or was answered")
	}
	// Off unless the policy lists the channel.
	off := newHarness(t, "", false)
	ev := off.message(off.sender, Message{TX: off.psbtHex(50_000)}, off.now)
	off.ch.Handle(ctx, ev)
	if off.ch.Drops()["disabled"] != 1 || off.ch.Handled() != 0 {
		t.Fatalf("a disabled channel took an event: %v", off.ch.Drops())
	}
}

// TestChannelRateLimit: past the burst, events are dropped before decryption or any write.
func TestChannelRateLimit(t *testing.T) {
	h := newHarness(t, polDoc, false)
	h.ch.lim.SetBurstAt(h.now, 2)
	h.ch.lim.SetLimitAt(h.now, 0)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		h.ch.Handle(ctx, h.message(h.sender, Message{TX: h.psbtHex(btcutil.Amount(50_000 + i))}, h.now))
	}
	if h.ch.Handled() != 2 || h.ch.Drops()["rate"] != 2 {
		t.Fatalf("handled %d, drops %v", h.ch.Handled(), h.ch.Drops())
	}
}

// TestChannelUndecidedIsTakenAgain: a request psbtflow does not decide (the wallet view is not
// synced) leaves no record, so the same event delivered again is decided and answered.
func TestChannelUndecidedIsTakenAgain(t *testing.T) {
	h := newHarness(t, polDoc, false)
	ctx := context.Background()
	ev := h.message(h.sender, Message{TX: h.psbtHex(50_000)}, h.now)
	h.w.Chain.Syncing = true
	h.ch.Handle(ctx, ev)
	if _, ok, _ := h.db.ElectrumNostrEventByID(ctx, ev.ID); ok || len(h.pool.take()) != 0 {
		t.Fatal("an undecided event was kept or answered")
	}
	h.w.Chain.Syncing = false
	h.ch.Handle(ctx, ev)
	if sent := h.pool.take(); len(sent) != 1 || h.ch.Drops()["seen"] != 0 {
		t.Fatalf("delivered again: %d answers, drops %v", len(sent), h.ch.Drops())
	}
}

// FuzzInbound: hostile content and plaintext never panic the decryption or the parser, and a
// parsed message always has a non-empty tx.
func FuzzInbound(f *testing.F) {
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	good, _ := Encrypt(`{"tx":"70736274ff","label":"x"}`, pk, sk)
	f.Add(good, `{"tx":"70736274ff"}`)
	f.Add("AAAA?iv=AAAA", `{"tx":5}`)
	f.Add("?iv=", `{"label":null}`)
	f.Fuzz(func(t *testing.T, content, plaintext string) {
		_, _ = Decrypt(content, pk, sk)
		if m, err := ParseMessage(plaintext); err == nil && m.TX == "" {
			t.Fatalf("parsed %q with an empty tx", plaintext)
		}
	})
}
