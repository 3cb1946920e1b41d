// Package cosign is the coordination with the other co-signers of the wallet (issue 6,
// "Coordination"): this co-signer, as a NIP-46 client, sends sign_psbt to each co-signer's
// remote signer and checks what comes back (psbt.SignatureRequest) before the outbound
// engine combines the partial signatures. It implements outbound.CosignerAsker over signer's
// NIP-46 client; it owns no proposal state and decides nothing about a proposal.
package cosign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/signer"
)

// Coordinator errors.
var (
	// ErrCosignerAnswer means a co-signer answered sign_psbt with something that is not its
	// signature on the PSBT asked: not a PSBT, another unsigned transaction, data conflicting
	// with ours, an invalid partial signature, or no new valid signature on some input.
	ErrCosignerAnswer = errors.New("cosign: unacceptable answer from a co-signer")
	// ErrCoordinatorClosed means Ask was called on (or interrupted by) a closed Coordinator.
	ErrCoordinatorClosed = errors.New("cosign: coordinator closed")
)

// CoordinatorOptions tune a Coordinator. The zero value gives the documented defaults.
type CoordinatorOptions struct {
	// Timeout is how long a request goes unanswered before it is sent again (same id), and how
	// long a connect may take before the co-signer is dialed again (default 30s).
	Timeout time.Duration
	// Pool carries the requests to every co-signer (default: one relaypool.Pool per bunker URI
	// on that URI's relays, closed by Close).
	Pool signer.RelayPool
	// Descriptor is the registered wallet. When set, the PSBT asked and the answers are checked
	// against it (every input re-derived from its keys); when nil, against the scripts of the
	// PSBT asked (its witness UTXOs and witness scripts, which must commit to each other).
	Descriptor *descriptor.Descriptor
	Logger     *slog.Logger
}

// Coordinator asks other co-signers (NIP-46 remote signers) for their signatures. It keeps one
// NIP-46 client per bunker URI, dialed on first use and reused; Close closes them all. It is
// safe for concurrent use.
type Coordinator struct {
	sk   string
	opts CoordinatorOptions
	log  *slog.Logger

	ctx    context.Context // ended by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	clients map[string]*coClient
	closed  bool
}

type coClient struct {
	mu sync.Mutex // held while dialing
	c  *signer.Client
}

// NewCoordinator returns a Coordinator whose NIP-46 client key is clientSK (hex; this
// co-signer's Nostr identity key, which the other co-signers' policies list as a client).
func NewCoordinator(clientSK string, opts CoordinatorOptions) *Coordinator {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{sk: clientSK, opts: opts, log: opts.Logger.With("component", "cosign"), ctx: ctx, cancel: cancel,
		clients: map[string]*coClient{}}
}

// Close closes every client; Asks in flight return ErrCoordinatorClosed.
func (c *Coordinator) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	clients := c.clients
	c.clients = map[string]*coClient{}
	c.mu.Unlock()
	c.cancel()
	for _, e := range clients {
		e.mu.Lock() // a dial in progress ends with c.ctx
		if e.c != nil {
			e.c.Close()
		}
		e.mu.Unlock()
	}
}

// Ask sends sign_psbt [p as base64, without its partial signatures] to the co-signer at
// bunkerURI under requestID and waits for its answer (docs/nip46-clients.md; NIP-46
// request/response). The caller stores requestID before calling: after a restart it asks again
// with the same id and the same PSBT, and the remote signer answers that request the same way
// instead of evaluating it twice. The signatures are left out of the request (a co-signer signs
// its own share whatever others signed) so that a PSBT that other co-signers' signatures were
// combined into since is still the same request; any other change to p makes it another one,
// which a remote signer refuses under a used id (invalid_request).
//
// The co-signer is dialed with connect (the bunker URI's secret; a client that already spent it
// reconnects with it) and dialed again after each Timeout while unreachable. The request is
// re-sent (same id) after each Timeout without an answer. An auth_url answer (the co-signer
// holds the request: cooling-off, approvals) calls onHeld(url) once per distinct URL and the
// wait goes on. Ask returns when the co-signer answers, or ctx ends, with:
//   - the co-signer's PSBT, checked: the same unsigned transaction, no data conflicting with
//     p's (Combine), every partial signature in it valid (see Finalize for the checks), and at
//     least one valid signature by a key of the input's script on every input;
//   - an *outbound.Refusal (wrapped, naming the co-signer; the *nip46.RemoteError inside) for
//     an error answer: policy_denied, unauthorized, unsafe_psbt, … (internal and rate_limited
//     are marked passing: the co-signer has not finished syncing, or asks to slow down);
//   - ErrCosignerAnswer naming the co-signer for an answer that fails the checks;
//   - ctx's error, ErrCoordinatorClosed, nip46.ErrBadURI or psbt.ErrInputUnresolved (p
//     cannot be checked) otherwise.
//
// p is not modified.
func (c *Coordinator) Ask(ctx context.Context, bunkerURI, requestID string, p *btcpsbt.Packet, onHeld func(url string)) (*btcpsbt.Packet, error) {
	bp, err := nip46.ParseBunkerURI(bunkerURI)
	if err != nil {
		return nil, err
	}
	name := shortKey(bp.RemoteSignerPubKey)
	sr, err := psbt.NewSignatureRequest(p, c.opts.Descriptor)
	if err != nil {
		return nil, err
	}
	asked := sr.PSBT
	text, err := psbt.Encode(asked, psbt.Base64)
	if err != nil {
		return nil, err
	}
	ctx, stop := c.bound(ctx)
	defer stop()
	cl, err := c.client(ctx, bunkerURI, name)
	if err != nil {
		return nil, err
	}
	var heldMu sync.Mutex
	held := map[string]bool{}
	onAuth := func(url string) {
		heldMu.Lock()
		first := !held[url]
		held[url] = true
		heldMu.Unlock()
		if first {
			c.log.Info("co-signer holds the request", "cosigner", name, "id", requestID, "url", url)
			if onHeld != nil {
				onHeld(url)
			}
		}
	}
	c.log.Info("asking co-signer for its signature", "cosigner", name, "id", requestID, "unsigned_txid", asked.UnsignedTx.TxHash())
	res, err := cl.CallWithID(ctx, requestID, "sign_psbt", []string{text}, c.opts.Timeout, onAuth)
	if err != nil {
		var re *nip46.RemoteError
		switch {
		case errors.As(err, &re):
			c.log.Info("co-signer refused", "cosigner", name, "id", requestID, "error", re.Text)
			return nil, fmt.Errorf("cosign: co-signer %s: %w", name, refusal(re))
		case c.ctx.Err() != nil:
			return nil, ErrCoordinatorClosed
		}
		return nil, err
	}
	got, err := sr.CheckAnswer(res)
	if err != nil {
		c.log.Warn("co-signer's answer refused", "cosigner", name, "id", requestID, "error", err)
		return nil, fmt.Errorf("%w: co-signer %s: %v", ErrCosignerAnswer, name, err)
	}
	c.log.Info("co-signer signed", "cosigner", name, "id", requestID)
	return got, nil
}

// Warm connects to the co-signer at bunkerURI now, as the first Ask would (its relays
// subscribed, NIP-46 connect with the URI's secret answered; dialed again after each Timeout
// while unreachable), so that a later Ask sends its request at once (outbound.CosignerWarmer).
// It returns nil once connected (at once when already connected), or ctx's error,
// ErrCoordinatorClosed, nip46.ErrBadURI, or the co-signer's refusal of connect.
func (c *Coordinator) Warm(ctx context.Context, bunkerURI string) error {
	bp, err := nip46.ParseBunkerURI(bunkerURI)
	if err != nil {
		return err
	}
	ctx, stop := c.bound(ctx)
	defer stop()
	_, err = c.client(ctx, bunkerURI, shortKey(bp.RemoteSignerPubKey))
	return err
}

var _ outbound.CosignerWarmer = (*Coordinator)(nil)

func (c *Coordinator) bound(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// client returns the client for uri, dialing it (again after each Timeout while the co-signer
// is unreachable) when there is none yet.
func (c *Coordinator) client(ctx context.Context, uri, name string) (*signer.Client, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrCoordinatorClosed
	}
	e := c.clients[uri]
	if e == nil {
		e = &coClient{}
		c.clients[uri] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.c == nil {
		cl, err := signer.DialBunker(ctx, c.sk, uri, signer.ClientOptions{Timeout: c.opts.Timeout, Pool: c.opts.Pool, Logger: c.opts.Logger})
		if err == nil {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if closed {
				cl.Close()
				return nil, ErrCoordinatorClosed
			}
			e.c = cl
			c.log.Info("connected to co-signer", "cosigner", name)
			break
		}
		var re *nip46.RemoteError
		switch {
		case c.ctx.Err() != nil:
			return nil, ErrCoordinatorClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &re):
			return nil, fmt.Errorf("cosign: co-signer %s refused connect: %w", name, err)
		case errors.Is(err, nip46.ErrBadURI), errors.Is(err, keystore.ErrNotOurKey):
			return nil, err
		}
		c.log.Warn("co-signer unreachable; dialing again", "cosigner", name, "error", err, "retry_in", c.opts.Timeout)
		t := time.NewTimer(c.opts.Timeout)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.ctx.Err() != nil {
				return nil, ErrCoordinatorClosed
			}
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return e.c, nil
}

func shortKey(pk string) string {
	if len(pk) > 16 {
		return pk[:16]
	}
	return pk
}

// refusal is a co-signer's error answer as the outbound engine reads it: passing (internal: it
// has not finished syncing; rate_limited) or refused for good under this request id only because
// its view of the chain lags ours (unsafe_psbt: input_unspent — the coin pays its wallet but it
// does not know it as unspent yet; if the coin was in fact spent elsewhere, this co-signer's own
// watcher abandons the proposal). The *nip46.RemoteError stays in the chain (errors.As).
func refusal(re *nip46.RemoteError) *outbound.Refusal {
	code := re.Code()
	return &outbound.Refusal{Text: re.Text, Err: re,
		Passing: code == nip46.CodeInternal || code == nip46.CodeRateLimited,
		ViewLag: code == nip46.CodeUnsafePSBT && strings.Contains(re.Text, "input_unspent")}
}
