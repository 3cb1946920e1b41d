package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

// cmdRun wires the daemon: store, keys, descriptor, policy, chain watcher, relay pool, NIP-46
// remote signer, health endpoint. It returns when ctx is cancelled (SIGTERM/SIGINT) after a
// graceful stop, or with the first component's fatal error.
func cmdRun(ctx context.Context, cfg *Config) error {
	log := cfg.logger()
	params, _ := cfg.Params()
	if cfg.Descriptor == "" {
		return errors.New("configuration: COSIGNER_DESCRIPTOR is empty: set the wallet descriptor (with #checksum) this co-signer holds a key of")
	}
	desc, err := descriptor.Parse(cfg.Descriptor, params, descriptor.RequireChecksum())
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list at least one relay (several for redundancy)")
	}
	if _, err := policy.Load(cfg.PolicyFile, policy.WithNetwork(params)); err != nil {
		return fmt.Errorf("configuration: COSIGNER_POLICY: %w", err)
	}
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	keys, err := signer.LoadKeyFile(cfg.KeyFile, pass, params)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_KEY_FILE: %w", err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	// Delays and windows run on the trusted clock: a wall clock stepped forward does not end
	// them early (internal/trustedtime; docs/trust-model.md).
	clock, err := trustedtime.New(ctx, db, trustedtime.Options{})
	if err != nil {
		return err
	}
	policies, err := policy.NewReloader(ctx, cfg.PolicyFile, policyVersions{db}, log, clock.Now, policy.WithNetwork(params))
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_POLICY: %w", err)
	}

	etls, err := cfg.ElectrumTLS()
	if err != nil {
		return err
	}
	watcher, err := chainwatch.New(chainwatch.Config{
		ServerURL: cfg.ElectrumServers[0], Servers: cfg.ElectrumServers, Scripts: desc, Lookahead: cfg.Lookahead, DB: db, Params: params,
		Logger: log, ClientName: "cosigner", Electrum: electrum.Options{TLS: etls},
	})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: %w", err)
	}
	pool, err := relaypool.New(cfg.Relays, relaypool.Options{Logger: log, Quorum: cfg.RelayQuorum, AuthSigner: nostrAuthSigner(keys.NostrSecretKey())})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_RELAYS: %w", err)
	}
	defer pool.Close()
	// The header chain's median time past bounds the clock once the watcher offers it.
	if mtp, ok := any(watcher).(trustedtime.Chain); ok {
		clock.SetChain(mtp)
	} else {
		clock.SetChain(&storedHeadersMTP{db: db, w: watcher})
	}
	flowOpts := []psbtflow.Option{psbtflow.WithClock(clock.Now), psbtflow.WithLimits(cfg.Limits())}
	if cfg.HealthAddr != "" {
		flowOpts = append(flowOpts, psbtflow.WithHoldURL("http://"+cfg.HealthAddr))
	}
	flow, err := psbtflow.NewService(desc, keys, chainView{watcher}, policies.Policy, db, log, flowOpts...)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	reqMetrics := newRequestMetrics()
	remote, err := newRemoteSigner(cfg, keys, desc, pool, db, countedPSBT{reqMetrics, flow}, reqMetrics, log)
	if err != nil {
		return err
	}
	reqMetrics.drops = remote.Drops
	// Held requests get their late answer through the remote signer (NIP-46 auth_url flow);
	// approvers and clients reach the held requests with approve and psbt_status.
	flow.SetResponder(remote)
	if err := remote.Handle("approve", reqMetrics.wrap("approve", flow.Approve)); err != nil {
		return err
	}
	if err := remote.Handle("psbt_status", reqMetrics.wrap("psbt_status", flow.PSBTStatus)); err != nil {
		return err
	}
	// Automations (issue 6): chain events and schedules → proposals, signed here under the
	// policy, co-signed over NIP-46, finalized, broadcast and followed (psbtflow.Engine).
	// The other co-signers are asked with this co-signer's own Nostr identity key as the NIP-46
	// client key (their policies list its npub).
	coords := &coordinators{sk: keys.NostrSecretKey(), desc: desc, log: log}
	defer coords.Close()
	// The operators hear of held, denied, stuck, broadcast, confirmed and abandoned proposals by
	// NIP-17 direct messages (COSIGNER_NOTIFY_NPUB; none when empty).
	var notices psbtflow.Notifier
	if len(cfg.NotifyRecipients) > 0 {
		dm, err := notify.New(keys.NostrSecretKey(), cfg.NotifyRecipients, pool, log)
		if err != nil {
			return fmt.Errorf("configuration: COSIGNER_NOTIFY_NPUB: %w", err)
		}
		defer dm.Close()
		notices = dmNotifier{dm: dm, log: log.With("component", "outbound")}
	}
	prevTx := &electrumPrevTx{servers: cfg.ElectrumServers, opts: electrum.Options{TLS: etls, ClientName: "cosigner", Logger: log}}
	defer prevTx.Close()
	engine := psbtflow.NewEngine(flow, chainView{watcher}, psbtflow.EngineOptions{AskerFor: coords.For, Notifier: notices, Prev: prevTx, Logger: log})
	flow.SetReplaceable(engine.ReplaceableCoin)
	flow.SetTxConfirmed(func(txid chainhash.Hash) bool {
		st, ok := watcher.Tx(txid)
		return ok && st.Verified && st.Height > 0
	})
	flow.SetSpendFacts(watcher)
	log.Info("cosigner starting", "network", params.Name, "key", keys.Public.KeyOrigin(), "npub", keys.Public.NPub(),
		"wallet", desc.String(), "electrum", cfg.ElectrumURL, "relays", pool.URLs(), "policy", cfg.PolicyFile)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	start("chainwatch", watcher.Run)
	start("clock", clock.Run)
	// The watcher never drops an event and waits when its buffer is full, so its events are
	// always drained here: reported in the log, and handed to the automations engine.
	start("chain events", func(ctx context.Context) error {
		logChainEvents(ctx, watcher.Events(), watcher.Ack, log.With("component", "chainwatch"), flow, engine)
		return nil
	})
	start("outbound", engine.Run)
	if cfg.HealthAddr != "" {
		ln, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			cancel(nil)
			wg.Wait()
			return fmt.Errorf("configuration: COSIGNER_HEALTH_ADDR=%s: %w", cfg.HealthAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/requests/", flow.HTTPHandler())
		mux.Handle("/", healthHandler(watcher, pool, db, reqMetrics))
		start("health", func(ctx context.Context) error { return serveHealth(ctx, ln, mux, defaultHealthLimits) })
	}
	// NIP-46 is served from the start (connect, ping…); sign_psbt waits for the wallet view to be
	// complete (psbtflow answers "not synced yet" before that).
	start("signer", remote.Run)
	start("policy reload", policies.Run)
	start("held requests", flow.Run)
	start("retention", func(ctx context.Context) error {
		return db.RunRetention(ctx, store.Retention{MaxAge: cfg.RetentionAge, MaxAuditRows: cfg.RetentionAuditRows,
			MaxRequestRows: cfg.RetentionRequestRows, SeenTTL: signer.ReplayWindow, MaxSeenEvents: cfg.RetentionSeenEvents},
			cfg.RetentionInterval, log)
	})
	start("sync report", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
		case <-watcher.Ready():
			log.Info("wallet synced", "utxos", len(watcher.UTXOs()), "tip", watcher.Tip().Height)
		}
		return nil
	})
	<-ctx.Done()
	cause := context.Cause(ctx)
	log.Info("stopping", "reason", cause)
	wg.Wait()
	if cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// logChainEvents reports the wallet's chain events in words until the channel closes or ctx ends.
// Events that can change a proven fact (Spent, FundingConfirmed, FundingReorged, NewTip) make the
// spend exposure reconcile with the watcher's proven view (flow.ReconcileExposure); the event
// itself is never taken as a fact. Each event is acknowledged once handled, so a restart does not
// report it again; one whose exposure update failed is not acknowledged and comes back after a
// restart.
func logChainEvents(ctx context.Context, events <-chan chainwatch.Event, ack func(context.Context, uint64) error, log *slog.Logger, flow *psbtflow.Service, engine *psbtflow.Engine) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch e := ev.(type) {
			case chainwatch.FundingSeen:
				log.Info("funding seen", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "branch", e.UTXO.Branch, "index", e.UTXO.Index, "height", e.UTXO.Height)
			case chainwatch.FundingConfirmed:
				log.Info("funding confirmed", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "confirmations", e.Confs)
			case chainwatch.Spent:
				by := ""
				if e.SpentBy != nil {
					by = e.SpentBy.String()
				}
				log.Info("coin spent", "outpoint", e.OutPoint.String(), "value", e.UTXO.Value.String(), "spent_by", by)
				if e.SpentBy != nil {
					flow.NoteSpentCoin(e.OutPoint, psbtflow.Coin{Value: e.UTXO.Value, PkScript: e.UTXO.PkScript, Branch: e.UTXO.Branch,
						Index: e.UTXO.Index, Height: e.UTXO.Height}, *e.SpentBy)
				}
			case chainwatch.FundingDropped:
				log.Warn("funding dropped (evicted, replaced or reorged out)", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String())
			case chainwatch.FundingReorged:
				log.Warn("funding reorged out: unconfirmed until proven in the new chain", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "was_height", e.UTXO.Height)
			case chainwatch.FundingMatured:
				log.Info("coinbase output matured: spendable from the next block", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "height", e.Tip.Height)
			case chainwatch.FundingImmature:
				log.Warn("coinbase output immature again (reorg): not spendable", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String())
			case chainwatch.NewTip:
				if e.Reorged {
					log.Warn("chain reorganised", "fork", e.Fork, "height", e.Tip.Height, "hash", e.Tip.Hash.String())
				} else {
					log.Debug("new tip", "height", e.Tip.Height, "hash", e.Tip.Hash.String())
				}
			}
			switch ev.(type) {
			case chainwatch.Spent, chainwatch.FundingConfirmed, chainwatch.FundingReorged, chainwatch.NewTip:
				if err := flow.ReconcileExposure(ctx); err != nil {
					if ctx.Err() == nil {
						log.Error("spend exposure update failed; the event is kept for the next start", "id", ev.EventID(), "error", err)
					}
					continue
				}
			}
			// The proposals the event fires are stored before it is acknowledged: a crash in
			// between re-delivers the event, which finds them (one per trigger key).
			if engine != nil {
				if err := engine.HandleEvent(ctx, ev); err != nil {
					if ctx.Err() == nil {
						log.Error("automations could not handle the event; it is kept for the next start", "id", ev.EventID(), "error", err)
					}
					continue
				}
			}
			if err := ack(ctx, ev.EventID()); err != nil && ctx.Err() == nil {
				log.Warn("could not acknowledge chain event", "id", ev.EventID(), "err", err)
			}
		}
	}
}

// chainView adapts the watcher to psbtflow.ChainView.
type chainView struct{ w *chainwatch.Watcher }

func (c chainView) Coin(op wire.OutPoint) (psbtflow.Coin, bool) {
	u, ok := c.w.UTXO(op)
	if !ok || !u.Mature(chainwatch.Tip{Height: c.w.Tip().Height + 1}) {
		return psbtflow.Coin{}, false // immature coinbase outputs cannot be spent yet
	}
	return psbtflow.Coin{Value: u.Value, PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height}, true
}

func (c chainView) Lookup(pkScript []byte) (uint32, uint32, bool)     { return c.w.Lookup(pkScript) }
func (c chainView) SpendableUTXOs() []chainwatch.UTXO                 { return c.w.SpendableUTXOs() }
func (c chainView) Tx(txid chainhash.Hash) (chainwatch.TxState, bool) { return c.w.Tx(txid) }
func (c chainView) Tip() chainwatch.Tip                               { return c.w.Tip() }
func (c chainView) Broadcast(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	return c.w.Broadcast(ctx, tx)
}
func (c chainView) EstimateFee(ctx context.Context, blocks int) electrum.FeeEstimate {
	return c.w.EstimateFee(ctx, blocks)
}
func (c chainView) TipHeight() int32 { return c.w.Tip().Height }

// Synced is true once the watcher's initial sync has completed.
func (c chainView) Synced() bool {
	select {
	case <-c.w.Ready():
		return true
	default:
		return false
	}
}

// healthHandler serves /metrics (Prometheus, see metrics.go), /healthz (200 when the wallet is synced, the Electrum server connected and
// at least one relay connected; 503 otherwise) and /status (the wallet view as JSON).
func healthHandler(w *chainwatch.Watcher, pool *relaypool.Pool, db *store.DB, rm *requestMetrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(pool, append(rm.dropCollectors(), newDaemonCollector(w, db), rm.requests)...))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, r *http.Request) {
		ready := false
		select {
		case <-w.Ready():
			ready = true
		default:
		}
		relays := pool.Health()
		up := 0
		for _, r := range relays {
			if r.Connected {
				up++
			}
		}
		eh := w.Health()
		ok := ready && eh.Connected && up > 0
		body := daemonJSON{OK: ok, Synced: ready, Electrum: toElectrumJSON(eh), Relays: relays}
		rw.Header().Set("Content-Type", "application/json")
		if !ok {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(rw).Encode(body)
	})
	mux.HandleFunc("/status", func(rw http.ResponseWriter, r *http.Request) {
		st, err := chainwatch.ReadStatus(r.Context(), db)
		if err != nil {
			http.Error(rw, "status unavailable", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(toWalletJSON(st))
	})
	return mux
}

// storedHeadersMTP is the median time past (BIP-113) of the watcher's validated header chain,
// read from the headers it stores, for the trusted clock; recomputed when the tip moves.
type storedHeadersMTP struct {
	db *store.DB
	w  *chainwatch.Watcher

	mu     sync.Mutex
	height int32
	hash   chainhash.Hash
	mtp    time.Time
	ok     bool
}

func (m *storedHeadersMTP) MedianTimePast() (time.Time, bool) {
	tip := m.w.Tip()
	if tip.Height <= 0 {
		return time.Time{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ok && tip.Height == m.height && tip.Hash == m.hash {
		return m.mtp, true
	}
	t, ok, err := m.db.MedianTimePast(context.Background(), tip.Height)
	if err != nil || !ok {
		return time.Time{}, false
	}
	m.height, m.hash, m.mtp, m.ok = tip.Height, tip.Hash, t, true
	return t, true
}
