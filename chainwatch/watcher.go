package chainwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/store"
)

// Defaults for Config.
const (
	DefaultLookahead    = 20
	DefaultEventBuffer  = 1024
	DefaultReconnectMin = 500 * time.Millisecond
	DefaultReconnectMax = 60 * time.Second
)

// Config configures a Watcher. ServerURL (or Servers), Scripts, DB and Params are required.
type Config struct {
	// ServerURL is the Electrum server, "tcp://host:port" or "ssl://host:port" (see
	// electrum.Dial). It is the first server when Servers is empty.
	ServerURL string
	// Servers lists several Electrum servers in order of preference; the watcher connects to
	// one through an electrum.Pool and fails over to another when its connection ends (every
	// new connection resubscribes everything; the stored statuses make that cheap). Empty
	// means [ServerURL].
	Servers []string
	// Scripts derives the wallet's scriptPubKeys (a *descriptor.Descriptor).
	Scripts ScriptSource
	// Lookahead is the number of unused scripts kept subscribed after the highest used index of
	// each branch (Electrum's gap limit). Default 20.
	Lookahead int
	// DB persists scripts, UTXOs and the tip (store migration 0002).
	DB *store.DB
	// Params is the network; the server's genesis header must match Params.GenesisHash.
	Params *chaincfg.Params
	// Logger gets records with component=chainwatch; nil means slog.Default().
	Logger *slog.Logger
	// ClientName is sent in server.version. Default "cosigner".
	ClientName string

	// EventBuffer is the capacity of the Events channel. Default 1024.
	EventBuffer int
	// ReconnectMin and ReconnectMax bound the reconnect backoff, which doubles from Min up to
	// Max with ±50 % jitter and resets after a session that completed its sync.
	ReconnectMin, ReconnectMax time.Duration
	// ReorgSafetyLimit is the deepest reorg followed (DefaultReorgSafetyLimit if 0); a deeper
	// fork stops the session with ErrReorgTooDeep and is retried on reconnect.
	ReorgSafetyLimit int
	// Checkpoints are the network's period checkpoints the header chain starts from (see
	// HeaderChain); nil means BuiltinCheckpoints(Params) (none for regtest: from genesis).
	Checkpoints *Checkpoints
	// Electrum tunes the client (timeouts, keepalive interval, message size bound); its
	// ClientName and Logger are set from this Config.
	Electrum electrum.Options
}

// Watcher follows the wallet's scripts on an Electrum server. Create it with New, start it with
// Run; the read methods are safe for concurrent use at any time.
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	events chan Event
	ready  chan struct{}

	readyOnce   sync.Once
	running     atomic.Bool
	fetches     atomic.Uint64
	skipped     atomic.Uint64
	spvFailures atomic.Uint64
	outstanding atomic.Int64 // scripts queued or waiting for a refetch in this session
	reg         *registry
	pace        *pacer // adaptive pacing of batches under server throttling (pacing.go)
	pool        *electrum.Pool
	stored      []store.ChainwatchEvent // unacknowledged events loaded from the store, delivered again by Run
	redelivered chan struct{}           // closed once they are (new events wait for it)

	// beforeWrite, when set (by tests), is called with every state write before it is made; an
	// error stops the write and the watcher (Run returns it as ErrStore), as a crash at that
	// point would: the crash tests inject one at each write in turn.
	beforeWrite func(store.ChainwatchUpdate) error

	mu        sync.RWMutex // guards everything below
	tr        *Tracker
	client    *electrum.Client
	lastErr   error
	lastErrAt time.Time
}

// New validates cfg and returns a Watcher that has not connected yet. Errors wrap ErrConfig,
// or electrum.ErrUnsupportedScheme / electrum.ErrBadURL for the server URL.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Servers) == 0 {
		if err := electrum.ParseServerURL(cfg.ServerURL); err != nil {
			return nil, fmt.Errorf("%w: ServerURL: %w", ErrConfig, err)
		}
		cfg.Servers = []string{cfg.ServerURL}
	}
	if cfg.ServerURL == "" {
		cfg.ServerURL = cfg.Servers[0]
	}
	if cfg.Scripts == nil {
		return nil, fmt.Errorf("%w: Scripts is nil", ErrConfig)
	}
	if cfg.DB == nil {
		return nil, fmt.Errorf("%w: DB is nil", ErrConfig)
	}
	if cfg.Params == nil {
		return nil, fmt.Errorf("%w: Params is nil", ErrConfig)
	}
	if cfg.Lookahead == 0 {
		cfg.Lookahead = DefaultLookahead
	}
	if cfg.Lookahead < 0 {
		return nil, fmt.Errorf("%w: Lookahead %d < 0", ErrConfig, cfg.Lookahead)
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = DefaultEventBuffer
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = max(DefaultReconnectMax, cfg.ReconnectMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ClientName == "" {
		cfg.ClientName = electrum.DefaultClientName
	}
	if cfg.ReorgSafetyLimit < 0 {
		return nil, fmt.Errorf("%w: ReorgSafetyLimit %d < 0", ErrConfig, cfg.ReorgSafetyLimit)
	}
	if cfg.Checkpoints == nil {
		cfg.Checkpoints = BuiltinCheckpoints(cfg.Params)
	}
	tr, err := NewTracker(cfg.Scripts, cfg.Lookahead, NewCheckpointedChain(cfg.Params, cfg.ReorgSafetyLimit, cfg.Checkpoints))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "chainwatch")
	cfg.Electrum.ClientName = cfg.ClientName
	cfg.Electrum.Logger = log
	pool, err := electrum.NewPool(cfg.Servers, electrum.PoolOptions{Options: cfg.Electrum, BackoffMin: cfg.ReconnectMin, BackoffMax: cfg.ReconnectMax})
	if err != nil {
		return nil, fmt.Errorf("%w: Servers: %w", ErrConfig, err)
	}
	return &Watcher{
		pool:        pool,
		cfg:         cfg,
		log:         log,
		events:      make(chan Event, cfg.EventBuffer),
		ready:       make(chan struct{}),
		tr:          tr,
		reg:         newRegistry(),
		pace:        &pacer{},
		redelivered: closedChan(),
	}, nil
}

// Events returns the event channel (buffered, Config.EventBuffer). Events are never dropped: when
// the buffer is full the watcher waits for the consumer, so drain it. It is closed when Run
// returns. Every event is stored (outbox, in the same database transaction as the state change)
// before it is sent and carries a stable EventID; Run first re-sends the events that were not
// acknowledged (Ack) before the last stop, with their ids, so a consumer that acknowledges what
// it has handled sees each event once across restarts. That re-sending runs while the watcher
// connects and syncs (Ready may close before the consumer has taken them all); every new event
// comes after them.
//
// After a restart, confirmations of UTXOs already confirmed before are not re-announced: count
// them from NewTip, or use RegisterConf.
func (w *Watcher) Events() <-chan Event { return w.events }

// Ready is closed once the first sync has completed: every script in the lookahead window
// (cascading) is subscribed and its history verified against its status.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// UTXO returns the wallet's UTXO at op, if unspent as far as the watcher knows.
func (w *Watcher) UTXO(op wire.OutPoint) (UTXO, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.UTXO(op)
}

// UTXOs returns the UTXO set, ordered by height (mempool last), txid, output index.
func (w *Watcher) UTXOs() []UTXO {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.UTXOs()
}

// Lookup reports whether pkScript is one of the tracked scripts (derived within the lookahead
// window) and its branch/index.
func (w *Watcher) Lookup(pkScript []byte) (branch, index uint32, ok bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.Lookup(pkScript)
}

// Ack acknowledges event id (persisted): it will not be delivered again after a restart.
// Acknowledging twice is fine. Errors: ErrUnknownEvent for an id never stored (0 included),
// ErrStore.
func (w *Watcher) Ack(ctx context.Context, id uint64) error {
	if err := w.cfg.DB.AckChainwatchEvent(ctx, id); err != nil {
		if errors.Is(err, store.ErrNoSuchEvent) {
			return fmt.Errorf("%w: %d", ErrUnknownEvent, id)
		}
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// SpendableUTXOs returns the UTXOs a transaction in the next block may spend: UTXOs minus
// coinbase outputs younger than CoinbaseMaturity (100) confirmations.
func (w *Watcher) SpendableUTXOs() []UTXO {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.SpendableUTXOs()
}

// Tx returns the state of a wallet transaction (listed in a tracked script's history): the
// server's height and whether its merkle proof checked against our header chain.
func (w *Watcher) Tx(txid chainhash.Hash) (TxState, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.Tx(txid)
}

// Tip returns the tip of the watcher's own validated header chain (zero before the first one).
func (w *Watcher) Tip() Tip {
	w.mu.RLock()
	defer w.mu.RUnlock()
	t, ok := w.tr.Tip()
	if !ok {
		return Tip{}
	}
	return t
}

// SpendableCoin returns the wallet's UTXO at op if a transaction in the next block may spend it
// (Tracker.SpendableCoin: unspent, and a coinbase output only with CoinbaseMaturity
// confirmations at the tip). Read under one lock: the UTXO and the tip are of the same moment.
func (w *Watcher) SpendableCoin(op wire.OutPoint) (UTXO, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.SpendableCoin(op)
}

// MedianTimePast returns BIP-113's median time past of the watcher's validated header chain
// (HeaderChain.MedianTimePast); ok is false before the chain has a header above genesis. It
// satisfies the trusted clock's chain bound (internal/trustedtime.Chain).
func (w *Watcher) MedianTimePast() (time.Time, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.Chain().MedianTimePast()
}

// Health returns a snapshot of the connection and sync state.
func (w *Watcher) Health() Health {
	w.mu.RLock()
	defer w.mu.RUnlock()
	h := Health{
		Server:         w.cfg.ServerURL,
		Servers:        w.pool.Health(),
		ScriptsTracked: w.tr.Len(),
		HistoryFetches: w.fetches.Load(),
		HistorySkipped: w.skipped.Load(),
		SPVFailures:    w.spvFailures.Load(),
		LastErrorAt:    w.lastErrAt,
		Headers:        w.tr.Chain().Height(),
		Unproven:       w.tr.Unproven(),
	}
	h.ScriptsSynced = max(h.ScriptsTracked-int(w.outstanding.Load()), 0)
	h.Tip, _ = w.tr.Tip()
	if w.client != nil {
		h.Connected = true
		h.Server = w.client.Server()
		h.ServerSoftware, h.Protocol = w.client.ServerSoftware, w.client.Protocol
	}
	if w.lastErr != nil {
		h.LastError = w.lastErr.Error()
	}
	select {
	case <-w.ready:
		h.Ready = true
	default:
	}
	return h
}

// Run loads the persisted state, then connects, syncs and follows the server's notifications
// until ctx is done, reconnecting after a connection loss with a growing, jittered backoff. It
// returns nil when ctx is done, or a fatal error: ErrWalletMismatch, ErrWrongNetwork, ErrStore,
// ErrAlreadyRunning. Run may be called once; it closes the Events channel when it returns.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer close(w.events)
	defer w.closeRegistry()
	if err := w.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// The stored events are decoded and delivered again while the first session connects and
	// syncs (a restart does not wait for the consumer to take them); new events follow them.
	runCtx, stop := context.WithCancelCause(ctx)
	w.redelivered = make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.redeliver(runCtx); err != nil {
			stop(err)
		}
	}()
	defer func() { stop(nil); <-done }()
	backoff := w.cfg.ReconnectMin
	for {
		synced, err := w.session(runCtx)
		if ctx.Err() != nil {
			return nil
		}
		if cause := context.Cause(runCtx); runCtx.Err() != nil && cause != nil {
			w.setErr(cause)
			w.log.Error("chainwatch stopped", "err", cause)
			return cause
		}
		if errors.Is(err, ErrWalletMismatch) || errors.Is(err, ErrWrongNetwork) || errors.Is(err, ErrStore) || errors.Is(err, ErrConfig) {
			w.setErr(err)
			w.log.Error("chainwatch stopped", "err", err)
			return err
		}
		if synced {
			backoff = w.cfg.ReconnectMin
		}
		w.setErr(err)
		d := backoff/2 + rand.N(backoff)
		w.log.Warn("electrum session ended; reconnecting", "err", err, "in", d)
		select {
		case <-runCtx.Done():
			if ctx.Err() != nil {
				return nil
			}
			cause := context.Cause(runCtx)
			w.setErr(cause)
			w.log.Error("chainwatch stopped", "err", cause)
			return cause
		case <-time.After(d):
		}
		backoff = min(backoff*2, w.cfg.ReconnectMax)
	}
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr, w.lastErrAt = err, time.Now()
	w.mu.Unlock()
}

func (w *Watcher) markReady() {
	w.readyOnce.Do(func() {
		close(w.ready)
		w.log.Info("chainwatch ready", "scripts", w.Health().ScriptsTracked, "utxos", len(w.UTXOs()))
	})
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// redeliver decodes the unacknowledged stored events and sends them in order, then closes
// w.redelivered. A stored event that does not decode is ErrStore (Run stops).
func (w *Watcher) redeliver(ctx context.Context) error {
	defer close(w.redelivered)
	for _, e := range w.stored {
		ev, err := decodeEvent(e)
		if err != nil {
			return err
		}
		select {
		case w.events <- ev:
		case <-ctx.Done():
			return nil
		}
	}
	w.stored = nil
	return nil
}

// emit publishes events in order, waiting for buffer space; false if ctx ended first.
func (w *Watcher) emit(ctx context.Context, evs []Event) bool {
	for _, ev := range evs {
		select {
		case w.events <- ev:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// load restores the persisted state into the tracker: headers (validated again), scripts, UTXOs,
// transactions, histories; and the unacknowledged events to deliver again.
func (w *Watcher) load(ctx context.Context) error {
	st, err := w.cfg.DB.LoadChainwatch(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	hdrs := make([]wire.BlockHeader, len(st.Headers))
	for i, b := range st.Headers {
		if err := hdrs[i].Deserialize(bytes.NewReader(b)); err != nil {
			return fmt.Errorf("%w: stored header %d: %w", ErrStore, int(st.HeadersFrom)+i, err)
		}
	}
	// A stored script counts as verified with its stored status; one stored unverified (a new
	// window's, before its first fetch) has the null status, which is what the server's status
	// is compared with when every start subscribes every script again.
	scripts := make([]ScriptState, len(st.Scripts))
	for i, s := range st.Scripts {
		scripts[i] = ScriptState{Branch: s.Branch, Index: s.Index, PkScript: s.PkScript, ScriptHash: s.ScriptHash, Status: s.Status, Verified: true}
	}
	utxos := make([]UTXO, len(st.UTXOs))
	for i, u := range st.UTXOs {
		if utxos[i], err = utxoFromStore(u); err != nil {
			return err
		}
	}
	txs := make([]TxState, len(st.Txs))
	for i, x := range st.Txs {
		if txs[i], err = txFromStore(x); err != nil {
			return err
		}
	}
	hist := make(map[string][]chainhash.Hash, len(st.Histories))
	for sh, ids := range st.Histories {
		for _, s := range ids {
			id, err := chainhash.NewHashFromStr(s)
			if err != nil {
				return fmt.Errorf("%w: stored history txid %q: %w", ErrStore, s, err)
			}
			hist[sh] = append(hist[sh], *id)
		}
	}
	raw := make([]*wire.MsgTx, len(st.RawTxs))
	for i, x := range st.RawTxs {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(x.Raw)); err != nil {
			return fmt.Errorf("%w: stored raw transaction %s: %w", ErrStore, x.TxID, err)
		}
		if id := tx.TxHash(); id.String() != x.TxID {
			return fmt.Errorf("%w: stored raw transaction %s hashes to %s", ErrStore, x.TxID, id)
		}
		raw[i] = &tx
	}
	w.stored = st.Unacked
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.tr.Chain().RestoreFrom(st.HeadersFrom, hdrs); err != nil {
		return fmt.Errorf("%w: stored headers: %w", ErrStore, err)
	}
	repaired, err := w.tr.Restore(scripts, utxos, txs, hist, raw)
	if err != nil {
		return err
	}
	if len(repaired) > 0 {
		// A window stored in part by an older version killed during a sync: the missing
		// scripts are stored now (unverified; the session subscribes them).
		var su store.ChainwatchUpdate
		for _, sc := range repaired {
			su.PutScripts = append(su.PutScripts, scriptToStore(sc))
		}
		if _, err := w.cfg.DB.ApplyChainwatchUpdate(ctx, su); err != nil {
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
		w.log.Warn("stored lookahead window had missing scripts; derived and stored them again", "scripts", len(repaired))
	}
	w.log.Info("chainwatch state loaded", "scripts", w.tr.Len(), "utxos", len(utxos), "txs", len(txs), "headers", len(hdrs), "unacked_events", len(w.stored))
	return nil
}
