package cosign

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

// memRelay is an in-process relay for kind-24133 events: every subscriber whose filter matches
// gets what anyone publishes (nothing is stored). The real relays are in the devnet tests.
type memRelay struct {
	mu   sync.Mutex
	subs []memSub
}

type memSub struct {
	ctx context.Context
	f   nostr.Filter
	ch  chan relaypool.Event
}

func (r *memRelay) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	ch := make(chan relaypool.Event, 64)
	r.mu.Lock()
	r.subs = append(r.subs, memSub{ctx, f, ch})
	r.mu.Unlock()
	return ch
}

func (r *memRelay) Publish(_ context.Context, ev nostr.Event) []relaypool.PublishResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subs {
		if s.ctx.Err() == nil && s.f.Matches(&ev) {
			e := ev
			select {
			case s.ch <- relaypool.Event{Event: &e, Relay: "mem://"}:
			default:
			}
		}
	}
	return []relaypool.PublishResult{{Relay: "mem://"}}
}

func (*memRelay) URLs() []string { return []string{"mem://"} }

// scriptedCosigner is a co-signer's sign_psbt handler that answers by the request id's prefix:
// sign (key C signs), echo (the PSBT unchanged), garbage (key C's signature of input 1 put on
// input 0), othertx (a PSBT of another transaction), deny (policy_denied), hold (auth_url).
type scriptedCosigner struct {
	t *testing.T
	f *wallettest.Wallet
}

func (h scriptedCosigner) SignPSBT(_ context.Context, r nip46.Call) (string, error) {
	p, enc, err := psbt.Decode(r.Params[0])
	if err != nil {
		return "", err
	}
	mode, _, _ := strings.Cut(r.ID, "-")
	switch mode {
	case "deny":
		return "", nip46.Errorf(nip46.CodePolicyDenied, "no-sweeps: not today")
	case "hold":
		return "", &nip46.HeldError{URL: "https://cosigner.example/requests/" + r.ID, Reason: "cooling off"}
	case "echo":
		return r.Params[0], nil
	case "othertx":
		p.UnsignedTx.LockTime++
	}
	if _, err := psbt.SignInputs(p, nil, h.f.Desc, h.f.Slot(h.t, h.f.Keys[2]), h.f.Keys[2], h.f.Chain); err != nil {
		return "", err
	}
	if mode == "garbage" {
		pub := p.Inputs[0].PartialSigs[len(p.Inputs[0].PartialSigs)-1]
		pub.Signature = p.Inputs[1].PartialSigs[len(p.Inputs[1].PartialSigs)-1].Signature
	}
	return psbt.Encode(p, enc)
}

func countSigs(t *testing.T, f *wallettest.Wallet, p *btcpsbt.Packet) int {
	t.Helper()
	n, err := psbt.Signatures(f.Desc, p)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	return n
}

// twoInputPSBT is an unsigned 2-input payment of the test wallet.
func twoInputPSBT(t *testing.T) (*wallettest.Wallet, *btcpsbt.Packet) {
	f := wallettest.New(t)
	in1 := f.AddCoin(t, 0, 0, 60_000)
	in2 := f.AddCoin(t, 1, 4, 50_000)
	return f, f.BuildPSBT(t, []wire.OutPoint{in1, in2}, 70_000, 39_000, 2)
}

// signedBy returns a copy of p signed by the test wallet's keys with the given indexes.
func signedBy(t *testing.T, f *wallettest.Wallet, p *btcpsbt.Packet, keys ...int) *btcpsbt.Packet {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	q, err := btcpsbt.NewFromRawBytes(&buf, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		f.Sign(t, q, k)
	}
	return q
}

func TestCoordinatorAsk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, p := twoInputPSBT(t)
	ours := signedBy(t, f, p, 0) // key A: this co-signer
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	relay := &memRelay{}
	rs, err := signer.NewRemoteSigner(nostr.GeneratePrivateKey(), relay, db, wallettest.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, scriptedCosigner{t, f}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rs.Run(rctx); close(done) }()
	defer func() { rcancel(); <-done }()
	if err := db.AddConnectSecretPerms(ctx, "s3cret", "sign_psbt"); err != nil {
		t.Fatal(err)
	}
	uri := nip46.BunkerURI(rs.PublicKey(), []string{"ws://unused.invalid"}, "s3cret")
	sk := nostr.GeneratePrivateKey()
	for _, desc := range []string{"descriptor", "scripts"} {
		t.Run(desc, func(t *testing.T) {
			opts := CoordinatorOptions{Pool: relay, Logger: wallettest.Quiet, Timeout: 200 * time.Millisecond}
			if desc == "descriptor" {
				opts.Descriptor = f.Desc
			}
			co := NewCoordinator(sk, opts)
			defer co.Close()
			got, err := co.Ask(ctx, uri, "sign-"+desc, ours, nil)
			if err != nil {
				t.Fatal(err)
			}
			comb, err := psbt.Combine(ours, got)
			if err != nil {
				t.Fatal(err)
			}
			if n := countSigs(t, f, comb); n != 2 {
				t.Fatalf("combined with the co-signer's answer: %d signatures", n)
			}
			if n := countSigs(t, f, ours); n != 1 {
				t.Fatalf("Ask modified the PSBT asked: %d signatures", n)
			}
			if _, err := psbt.Finalize(f.Desc, comb); err != nil {
				t.Fatal(err)
			}

			for _, c := range []struct{ mode, want string }{
				{"echo", "input 0: no new partial signature"},
				{"garbage", "input 0: invalid partial signature"},
				{"othertx", "unsigned transaction"},
			} {
				_, err := co.Ask(ctx, uri, c.mode+"-"+desc, ours, nil)
				if !errors.Is(err, ErrCosignerAnswer) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), shortKey(rs.PublicKey())) {
					t.Fatalf("%s: Ask = %v, want ErrCosignerAnswer naming the co-signer and %q", c.mode, err, c.want)
				}
			}
			_, err = co.Ask(ctx, uri, "deny-"+desc, ours, nil)
			var re *nip46.RemoteError
			if !errors.As(err, &re) || re.Code() != nip46.CodePolicyDenied || !strings.Contains(err.Error(), shortKey(rs.PublicKey())) {
				t.Fatalf("deny: Ask = %v, want a policy_denied RemoteError naming the co-signer", err)
			}

			// Held: onHeld is told once, the request is re-sent (auth_url again) and the late
			// answer on the same id ends the wait.
			var heldMu sync.Mutex
			var held []string
			res := make(chan error, 1)
			go func() {
				_, err := co.Ask(ctx, uri, "hold-"+desc, ours, func(u string) { heldMu.Lock(); held = append(held, u); heldMu.Unlock() })
				res <- err
			}()
			for {
				heldMu.Lock()
				n := len(held)
				heldMu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			signedC := signedBy(t, f, ours, 2)
			text, _ := psbt.Encode(signedC, psbt.Base64)
			pk, _ := nostr.GetPublicKey(sk)
			if err := rs.Respond(ctx, pk, "hold-"+desc, text, nil); err != nil {
				t.Fatal(err)
			}
			if err := <-res; err != nil {
				t.Fatalf("held request answered late: %v", err)
			}
			heldMu.Lock()
			defer heldMu.Unlock()
			if len(held) != 1 || held[0] != "https://cosigner.example/requests/hold-"+desc {
				t.Fatalf("onHeld calls %q, want one with the URL", held)
			}
		})
	}

	t.Run("refused before asking", func(t *testing.T) {
		co := NewCoordinator(sk, CoordinatorOptions{Pool: relay, Logger: wallettest.Quiet, Descriptor: f.Desc})
		defer co.Close()
		bad := signedBy(t, f, ours)
		bad.Inputs[0].Bip32Derivation = nil
		if _, err := co.Ask(ctx, uri, "sign-x", bad, nil); !errors.Is(err, psbt.ErrInputUnresolved) {
			t.Fatalf("Ask(PSBT without derivations) = %v", err)
		}
		if _, err := co.Ask(ctx, "bunker://nope", "sign-x", ours, nil); !errors.Is(err, nip46.ErrBadURI) {
			t.Fatalf("Ask(bad URI) = %v", err)
		}
		// Another client key with the spent secret has no session: the remote signer does not
		// answer it at all (a stranger's connect with an unusable secret), so Ask keeps trying
		// until its context ends.
		other := NewCoordinator(nostr.GeneratePrivateKey(), CoordinatorOptions{Pool: relay, Logger: wallettest.Quiet, Descriptor: f.Desc, Timeout: time.Second})
		defer other.Close()
		octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
		defer ocancel()
		var re *nip46.RemoteError
		if _, err := other.Ask(octx, uri, "sign-y", ours, nil); errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("another client key with the spent secret: %v", err)
		}
	})

	t.Run("close ends an Ask", func(t *testing.T) {
		co := NewCoordinator(sk, CoordinatorOptions{Pool: relay, Logger: wallettest.Quiet, Descriptor: f.Desc, Timeout: time.Hour})
		res := make(chan error, 1)
		go func() { _, err := co.Ask(ctx, uri, "hold-close", ours, func(string) { co.Close() }); res <- err }()
		if err := <-res; !errors.Is(err, ErrCoordinatorClosed) {
			t.Fatalf("Ask across Close = %v", err)
		}
	})
}

// countingRelay counts the events published through it.
type countingRelay struct {
	*memRelay
	mu sync.Mutex
	n  int
}

func (r *countingRelay) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	return r.memRelay.Publish(ctx, ev)
}

func (r *countingRelay) published() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Warm connects to a co-signer ahead of the first Ask (connect answered), once: the Ask that
// follows publishes only its request.
func TestCoordinatorWarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, p := twoInputPSBT(t)
	ours := signedBy(t, f, p, 0)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mem := &memRelay{}
	rs, err := signer.NewRemoteSigner(nostr.GeneratePrivateKey(), mem, db, wallettest.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, scriptedCosigner{t, f}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rs.Run(rctx); close(done) }()
	defer func() { rcancel(); <-done }()
	if err := db.AddConnectSecretPerms(ctx, "s3cret", "sign_psbt"); err != nil {
		t.Fatal(err)
	}
	uri := nip46.BunkerURI(rs.PublicKey(), []string{"ws://unused.invalid"}, "s3cret")
	relay := &countingRelay{memRelay: mem}
	co := NewCoordinator(nostr.GeneratePrivateKey(), CoordinatorOptions{Pool: relay, Logger: wallettest.Quiet, Descriptor: f.Desc, Timeout: time.Hour})
	defer co.Close()
	if err := co.Warm(ctx, uri); err != nil {
		t.Fatal(err)
	}
	connected := relay.published()
	if connected == 0 {
		t.Fatal("Warm published nothing")
	}
	if err := co.Warm(ctx, uri); err != nil || relay.published() != connected {
		t.Fatalf("Warm again: %v, %d events after %d: connected twice", err, relay.published(), connected)
	}
	if _, err := co.Ask(ctx, uri, "sign-warm", ours, nil); err != nil {
		t.Fatal(err)
	}
	if n := relay.published() - connected; n != 1 {
		t.Fatalf("Ask after Warm published %d events, want its request only", n)
	}
	if err := co.Warm(ctx, "bunker://nope"); !errors.Is(err, nip46.ErrBadURI) {
		t.Fatalf("Warm(bad URI) = %v", err)
	}
	co.Close()
	if err := co.Warm(ctx, uri); !errors.Is(err, ErrCoordinatorClosed) {
		t.Fatalf("Warm after Close = %v", err)
	}
}
