package psbtflow

// Coordination with the other co-signers of the wallet (issue 6, "Coordination"): this
// co-signer, as a NIP-46 client, sends sign_psbt to each co-signer's remote signer and checks
// what comes back before the partial signatures are combined (Combine) and finalized (Finalize).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/signer"
)

// Coordinator errors.
var (
	// ErrCosignerAnswer means a co-signer answered sign_psbt with something that is not its
	// signature on the PSBT asked: not a PSBT, another unsigned transaction, data conflicting
	// with ours, an invalid partial signature, or no new valid signature on some input.
	ErrCosignerAnswer = errors.New("psbtflow: unacceptable answer from a co-signer")
	// ErrCoordinatorClosed means Ask was called on (or interrupted by) a closed Coordinator.
	ErrCoordinatorClosed = errors.New("psbtflow: coordinator closed")
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
//   - a *signer.RemoteError (wrapped, naming the co-signer) for an error answer: its Code() is
//     policy_denied, unauthorized, unsafe_psbt, … (internal may be transient: the co-signer has
//     not finished syncing);
//   - ErrCosignerAnswer naming the co-signer for an answer that fails the checks;
//   - ctx's error, ErrCoordinatorClosed, signer.ErrBadURI or ErrInputUnresolved (p cannot be
//     checked) otherwise.
//
// p is not modified.
func (c *Coordinator) Ask(ctx context.Context, bunkerURI, requestID string, p *psbt.Packet, onHeld func(url string)) (*psbt.Packet, error) {
	bp, err := signer.ParseBunkerURI(bunkerURI)
	if err != nil {
		return nil, err
	}
	name := shortKey(bp.RemoteSignerPubKey)
	asked, err := clonePacket(p)
	if err != nil {
		return nil, fmt.Errorf("psbtflow: the PSBT to ask for: %w", err)
	}
	withoutSignatures(asked)
	ins, err := c.resolve(asked)
	if err != nil {
		return nil, err
	}
	text, err := Encode(asked, Base64)
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
		var re *signer.RemoteError
		switch {
		case errors.As(err, &re):
			c.log.Info("co-signer refused", "cosigner", name, "id", requestID, "error", re.Text)
			return nil, fmt.Errorf("psbtflow: co-signer %s: %w", name, err)
		case c.ctx.Err() != nil:
			return nil, ErrCoordinatorClosed
		}
		return nil, err
	}
	got, err := checkAnswer(asked, ins, res)
	if err != nil {
		c.log.Warn("co-signer's answer refused", "cosigner", name, "id", requestID, "error", err)
		return nil, fmt.Errorf("%w: co-signer %s: %v", ErrCosignerAnswer, name, err)
	}
	c.log.Info("co-signer signed", "cosigner", name, "id", requestID)
	return got, nil
}

// withoutSignatures removes every input's partial signatures (PSBT_IN_PARTIAL_SIG,
// PSBT_IN_TAP_KEY_SIG, PSBT_IN_TAP_SCRIPT_SIG): what stays is what a co-signer needs to check
// and sign its share.
func withoutSignatures(p *psbt.Packet) {
	for i := range p.Inputs {
		p.Inputs[i].PartialSigs = nil
		p.Inputs[i].TaprootKeySpendSig = nil
		p.Inputs[i].TaprootScriptSpendSig = nil
	}
}

// bound ends ctx also when the Coordinator is closed.
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
		var re *signer.RemoteError
		switch {
		case c.ctx.Err() != nil:
			return nil, ErrCoordinatorClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &re):
			return nil, fmt.Errorf("psbtflow: co-signer %s refused connect: %w", name, err)
		case errors.Is(err, signer.ErrBadURI), errors.Is(err, signer.ErrNotOurKey):
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

// resolve ties the PSBT's inputs to the registered descriptor, or without one to the PSBT's
// own witness scripts.
func (c *Coordinator) resolve(p *psbt.Packet) ([]resolvedInput, error) {
	if c.opts.Descriptor != nil {
		return resolveInputs(c.opts.Descriptor, p)
	}
	return resolveScripts(p)
}

// resolveScripts ties every input to its own witness script: the witness UTXO's script must be
// P2WSH of it (or P2SH of the P2WSH program given as the redeem script), and the witness script
// a multisig script (BIP-11 form, as wsh(multi|sortedmulti) writes it). Errors:
// ErrInputUnresolved.
func resolveScripts(p *psbt.Packet) ([]resolvedInput, error) {
	if p == nil || p.UnsignedTx == nil || len(p.Inputs) != len(p.UnsignedTx.TxIn) {
		return nil, fmt.Errorf("%w: malformed PSBT", ErrInputUnresolved)
	}
	out := make([]resolvedInput, len(p.Inputs))
	for i := range p.Inputs {
		pin := &p.Inputs[i]
		op := p.UnsignedTx.TxIn[i].PreviousOutPoint
		prev := pin.WitnessUtxo
		if prev == nil && pin.NonWitnessUtxo != nil && pin.NonWitnessUtxo.TxHash() == op.Hash && int(op.Index) < len(pin.NonWitnessUtxo.TxOut) {
			prev = pin.NonWitnessUtxo.TxOut[op.Index]
		}
		if prev == nil || pin.WitnessScript == nil {
			return nil, fmt.Errorf("%w: input %d: needs its witness UTXO and witness script", ErrInputUnresolved, i)
		}
		h := sha256.Sum256(pin.WitnessScript)
		program := append([]byte{txscript.OP_0, txscript.OP_DATA_32}, h[:]...)
		switch {
		case pin.RedeemScript == nil && bytes.Equal(prev.PkScript, program):
		case bytes.Equal(pin.RedeemScript, program) && bytes.Equal(prev.PkScript, p2shScript(program)):
		default:
			return nil, fmt.Errorf("%w: input %d: the witness script does not commit to the script spent", ErrInputUnresolved, i)
		}
		if txscript.GetScriptClass(pin.WitnessScript) != txscript.MultiSigTy {
			return nil, fmt.Errorf("%w: input %d: the witness script is not a multisig script", ErrInputUnresolved, i)
		}
		d := &descriptor.Derived{WitnessScript: pin.WitnessScript, RedeemScript: pin.RedeemScript, PkScript: prev.PkScript}
		tok := txscript.MakeScriptTokenizer(0, pin.WitnessScript)
		for tok.Next() {
			if len(tok.Data()) == 33 {
				pub, err := btcec.ParsePubKey(tok.Data())
				if err != nil {
					return nil, fmt.Errorf("%w: input %d: witness script key: %v", ErrInputUnresolved, i, err)
				}
				d.Keys = append(d.Keys, descriptor.DerivedKey{PubKey: pub})
			}
		}
		out[i] = resolvedInput{derived: d, prevOut: prev}
	}
	return out, nil
}

func p2shScript(redeem []byte) []byte {
	return append(append([]byte{txscript.OP_HASH160, txscript.OP_DATA_20}, btcutil.Hash160(redeem)...), txscript.OP_EQUAL)
}

// checkAnswer decodes a co-signer's sign_psbt result and checks it against the PSBT asked (see
// Ask). It returns the co-signer's PSBT.
func checkAnswer(asked *psbt.Packet, ins []resolvedInput, res string) (*psbt.Packet, error) {
	got, _, err := Decode(res)
	if err != nil {
		return nil, fmt.Errorf("the answer is not a PSBT: %v", err)
	}
	if h, want := got.UnsignedTx.TxHash(), asked.UnsignedTx.TxHash(); h != want || len(got.Inputs) != len(asked.Inputs) {
		return nil, fmt.Errorf("it answered a PSBT for unsigned transaction %s, asked %s", h, want)
	}
	if _, err := Combine(asked, got); err != nil {
		return nil, err
	}
	prev := prevOutFetcher(asked, ins)
	hashes := txscript.NewTxSigHashes(asked.UnsignedTx, prev)
	for i := range got.Inputs {
		added := 0
		for _, ts := range got.Inputs[i].TaprootScriptSpendSig {
			had := false
			for _, a := range asked.Inputs[i].TaprootScriptSpendSig {
				had = had || a.EqualKey(ts)
			}
			if had {
				continue
			}
			if err := verifyTapScriptSig(asked, i, ins[i], prev, hashes, ts); err != nil {
				return nil, fmt.Errorf("input %d: invalid taproot script-path signature: %v", i, err)
			}
			added++
		}
		for _, ps := range got.Inputs[i].PartialSigs {
			if _, had := findPartialSig(asked.Inputs[i].PartialSigs, ps.PubKey); had {
				continue // ours or another co-signer's, already there (Combine checked it is unchanged)
			}
			if err := verifyPartialSig(asked, i, ins[i], hashes, ps); err != nil {
				return nil, fmt.Errorf("input %d: invalid partial signature: %v", i, err)
			}
			added++
		}
		if added == 0 {
			return nil, fmt.Errorf("input %d: no new partial signature", i)
		}
	}
	return got, nil
}

func shortKey(pk string) string {
	if len(pk) > 16 {
		return pk[:16]
	}
	return pk
}
