package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/policy/policyfile"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/signer/psbtnostr"
	"github.com/custodyagents/cosigner/store"
)

// Daemon is the co-signer's component graph: store, keys, descriptor, policy, trusted clock,
// chain watcher, relay pool, NIP-46 remote signer, psbtflow service, automations engine, the
// chain-event subscriber list and the health listener. Make it with New, run it with Run.
type Daemon struct {
	cfg Config
	log *slog.Logger

	desc       *descriptor.Descriptor
	keys       *keystore.Keys
	db         *store.DB
	clock      *trustedtime.Clock
	policies   *policyfile.Reloader
	watcher    *chainwatch.Watcher
	pool       *relaypool.Pool
	flow       *psbtflow.Service
	reqMetrics *requestMetrics
	remote     *signer.RemoteSigner
	responders *responders        // late answers of held requests: NIP-46 or Electrum's channel
	electrum   *psbtnostr.Channel // nil when the wallet is not one Electrum can hold
	engine     *outbound.Engine
	health     net.Listener // nil: no health endpoint
	pprof      net.Listener // nil: no profiling endpoint (pprof.go)

	// chainEvents is the chain-event subscriber list (chainevents.go): every event goes to
	// each subscriber in order and is acknowledged once all returned nil.
	chainEvents []ChainSubscriber

	closers   []func() // in the order opened; closed in reverse
	closeOnce sync.Once
}

// New checks cfg and builds the component graph: it parses the descriptor and the policy, loads
// the key file, opens the database, and makes every component; nothing runs yet (no connection
// is made but the health listener's). ctx bounds the start (database migrations, the first
// policy load). Errors name the COSIGNER_* setting at fault ("configuration: COSIGNER_…") where
// one is; everything opened so far is closed again.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.Default()
	}
	steps := []func(context.Context) error{
		d.checkConfig,
		d.loadKeys,
		d.openStore,
		d.newWatcher,
		d.newRelayPool,
		d.newSigner,
		d.newElectrumNostr,
		d.newAutomations,
		d.listenHealth,
		d.listenPprof,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			d.Close()
			return nil, err
		}
	}
	d.chainEvents = d.chainSubscribers()
	return d, nil
}

// onClose registers f to run when the daemon closes (after Run, or at a failed New).
func (d *Daemon) onClose(f func()) { d.closers = append(d.closers, f) }

// Close releases what New opened (connections, the database), in reverse order. Run closes the
// daemon when it returns; Close is for a Daemon that is never run. Closing twice is fine.
func (d *Daemon) Close() {
	d.closeOnce.Do(func() {
		for i := len(d.closers) - 1; i >= 0; i-- {
			d.closers[i]()
		}
	})
}

// checkConfig parses the descriptor and checks the relays and the policy file.
func (d *Daemon) checkConfig(context.Context) error {
	cfg := d.cfg
	if cfg.Descriptor == "" {
		return errors.New("configuration: COSIGNER_DESCRIPTOR is empty: set the wallet descriptor (with #checksum) this co-signer holds a key of")
	}
	desc, err := descriptor.Parse(cfg.Descriptor, cfg.Params, descriptor.RequireChecksum())
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	d.desc = desc
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list at least one relay (several for redundancy)")
	}
	if len(cfg.ElectrumServers) == 0 {
		return errors.New("configuration: COSIGNER_ELECTRUM_URL is empty: give at least one Electrum server, tcp://host:port or ssl://host:port")
	}
	if _, err := policyfile.Load(cfg.PolicyFile, policy.WithNetwork(cfg.Params)); err != nil {
		return fmt.Errorf("configuration: COSIGNER_POLICY: %w", err)
	}
	return nil
}

// loadKeys decrypts the key file with the passphrase.
func (d *Daemon) loadKeys(context.Context) error {
	if d.cfg.Passphrase == nil {
		return errors.New("configuration: the key file passphrase is missing")
	}
	pass, err := d.cfg.Passphrase()
	if err != nil {
		return err
	}
	keys, err := keystore.LoadKeyFile(d.cfg.KeyFile, pass, d.cfg.Params)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_KEY_FILE: %w", err)
	}
	d.keys = keys
	return nil
}

// openStore opens the database, the trusted clock kept in it and the policy reloader.
func (d *Daemon) openStore(ctx context.Context) error {
	db, err := store.Open(ctx, d.cfg.DBPath)
	if err != nil {
		return err
	}
	d.db = db
	d.onClose(func() { db.Close() })
	// Delays and windows run on the trusted clock: a wall clock stepped forward does not end
	// them early (internal/trustedtime; docs/trust-model.md).
	if d.clock, err = trustedtime.New(ctx, db, trustedtime.Options{}); err != nil {
		return err
	}
	d.policies, err = policyfile.NewReloader(ctx, d.cfg.PolicyFile, policyVersions{db}, d.log, d.clock.Now, policy.WithNetwork(d.cfg.Params))
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_POLICY: %w", err)
	}
	return nil
}

// newWatcher makes the chain watcher; its header chain's median time past bounds the clock.
func (d *Daemon) newWatcher(context.Context) error {
	cfg := d.cfg
	watcher, err := chainwatch.New(chainwatch.Config{
		ServerURL: cfg.ElectrumServers[0], Servers: cfg.ElectrumServers, Scripts: d.desc, Lookahead: cfg.Lookahead, DB: d.db, Params: cfg.Params,
		Logger: d.log, ClientName: "cosigner", Electrum: electrum.Options{TLS: cfg.ElectrumTLS},
	})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: %w", err)
	}
	d.watcher = watcher
	d.clock.SetChain(watcher)
	return nil
}

// newRelayPool makes the relay pool; it answers NIP-42 AUTH with the bunker key.
func (d *Daemon) newRelayPool(context.Context) error {
	pool, err := relaypool.New(d.cfg.Relays, relaypool.Options{Logger: d.log, Quorum: d.cfg.RelayQuorum, AuthSigner: NostrAuthSigner(d.keys.NostrSecretKey())})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_RELAYS: %w", err)
	}
	d.pool = pool
	d.onClose(pool.Close)
	return nil
}

// newSigner makes the NIP-46 remote signer and the psbtflow service (sign_psbt under the
// policy) it serves: the remote signer first, so that the service gets it as the Responder of
// the late answers to held requests (NIP-46 auth_url flow), then the service's methods are
// registered on it (sign_psbt; approve and psbt_status, which approvers and clients use to reach
// held requests).
func (d *Daemon) newSigner(context.Context) error {
	d.reqMetrics = newRequestMetrics()
	remote, err := newRemoteSigner(d.cfg, d.keys, d.desc, d.pool, d.db, d.reqMetrics, d.log)
	if err != nil {
		return err
	}
	d.remote = remote
	d.responders = &responders{remote: remote, log: d.log}
	d.reqMetrics.drops = remote.Drops
	// An automation's fee bump spends again the coins of this co-signer's own broadcast,
	// unconfirmed proposals (outbound.Replaceable reads them from the store and the watcher).
	// The spend exposure and the replaceable coins move on the watcher's proven facts.
	flowOpts := []psbtflow.Option{psbtflow.WithClock(d.clock.Now), psbtflow.WithLimits(d.cfg.Limits),
		psbtflow.WithReplaceable(outbound.Replaceable(d.db, chainView{d.watcher})), psbtflow.WithResponder(d.responders),
		psbtflow.WithSpendFacts(d.watcher), psbtflow.WithTxConfirmed(func(txid chainhash.Hash) bool {
			st, ok := d.watcher.Tx(txid)
			return ok && st.Verified && st.Height > 0
		})}
	if d.cfg.HealthAddr != "" {
		flowOpts = append(flowOpts, psbtflow.WithHoldURL("http://"+d.cfg.HealthAddr))
	}
	flow, err := psbtflow.NewService(d.desc, d.keys, chainView{d.watcher}, d.policies.Policy, d.db, d.log, flowOpts...)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	d.flow = flow
	for _, m := range []struct {
		name string
		h    signer.HandlerFunc
	}{{nip46.MethodSignPSBT, flow.SignPSBT}, {nip46.MethodApprove, flow.Approve}, {nip46.MethodPSBTStatus, flow.PSBTStatus}} {
		if err := remote.Handle(m.name, d.reqMetrics.wrap(m.name, m.h)); err != nil {
			return err
		}
	}
	return nil
}

// newAutomations makes the automations engine (issue 6): chain events and schedules →
// proposals, signed here under the policy, co-signed over NIP-46, finalized, broadcast and
// followed (outbound.Engine). The other co-signers are asked with this co-signer's own Nostr
// identity key as the NIP-46 client key (their policies list its npub).
func (d *Daemon) newAutomations(context.Context) error {
	coords := &coordinators{sk: d.keys.NostrSecretKey(), desc: d.desc, log: d.log}
	d.onClose(coords.Close)
	// The operators hear of held, denied, stuck, broadcast, confirmed and abandoned proposals by
	// NIP-17 direct messages (COSIGNER_NOTIFY_NPUB; none when empty).
	var notices outbound.Notifier
	if len(d.cfg.NotifyRecipients) > 0 {
		dm, err := notify.New(d.keys.NostrSecretKey(), d.cfg.NotifyRecipients, d.pool, d.log)
		if err != nil {
			return fmt.Errorf("configuration: COSIGNER_NOTIFY_NPUB: %w", err)
		}
		d.onClose(dm.Close)
		notices = dmNotifier{dm: dm, log: d.log.With("component", "outbound")}
	}
	// Previous transactions for non_witness_utxo come from the watcher (its own copy, or its
	// Electrum connection). The engine's delays run on the trusted clock, like the holds'.
	engine, err := outbound.NewEngine(outbound.Config{Descriptor: d.desc, Store: d.db, Policy: d.policies.Policy, Signer: d.flow,
		Chain: chainView{d.watcher}, Now: d.clock.Now, AskerFor: coords.For, Notifier: notices, Prev: d.watcher, Logger: d.log})
	if err != nil {
		return err
	}
	d.engine = engine
	return nil
}

// listenHealth opens the health listener (COSIGNER_HEALTH_ADDR; none when empty).
func (d *Daemon) listenHealth(context.Context) error {
	if d.cfg.HealthAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", d.cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_HEALTH_ADDR=%s: %w", d.cfg.HealthAddr, err)
	}
	d.health = ln
	d.onClose(func() { ln.Close() })
	return nil
}

// Run runs every component until ctx is cancelled (SIGTERM/SIGINT) and stops them gracefully,
// or until the first one fails, which it returns (named: "chainwatch: …"). It closes the daemon
// when it returns. Run may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	cfg := d.cfg
	d.log.Info("cosigner starting", "network", cfg.Params.Name, "key", d.keys.Public.KeyOrigin(), "npub", d.keys.Public.NPub(),
		"wallet", d.desc.String(), "electrum", cfg.ElectrumURL, "relays", d.pool.URLs(), "policy", cfg.PolicyFile)

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
	start("chainwatch", d.watcher.Run)
	start("clock", d.clock.Run)
	// The watcher never drops an event and waits when its buffer is full, so its events are
	// always drained here, by the subscriber list.
	start("chain events", func(ctx context.Context) error {
		router := chainRouter{subscribers: d.chainEvents, ack: d.watcher.Ack, log: d.log.With("component", "chainwatch")}
		router.run(ctx, d.watcher.Events())
		return nil
	})
	start("outbound", d.engine.Run)
	if d.health != nil {
		handler := d.healthHandler()
		start("health", func(ctx context.Context) error { return serveHealth(ctx, d.health, handler, defaultHealthLimits) })
	}
	if d.pprof != nil {
		ln := d.pprof
		start("pprof", func(ctx context.Context) error { return servePprof(ctx, ln) })
	}
	// NIP-46 is served from the start (connect, ping…); sign_psbt waits for the wallet view to be
	// complete (psbtflow answers "not synced yet" before that).
	start("signer", d.remote.Run)
	start("policy reload", d.policies.Run)
	start("held requests", d.flow.Run)
	if d.electrum != nil {
		start("electrum_nostr", d.electrum.Run)
	}
	start("retention", d.runRetention)
	start("sync report", d.reportSync)
	<-ctx.Done()
	cause := context.Cause(ctx)
	d.log.Info("stopping", "reason", cause)
	wg.Wait()
	if cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// runRetention prunes old records (store.Retention) every RetentionInterval until ctx ends.
func (d *Daemon) runRetention(ctx context.Context) error {
	r := d.cfg.Retention
	r.SeenTTL = signer.ReplayWindow
	return d.db.RunRetention(ctx, r, d.cfg.RetentionInterval, d.log)
}

// reportSync logs once the wallet's initial sync has completed.
func (d *Daemon) reportSync(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-d.watcher.Ready():
		d.log.Info("wallet synced", "utxos", len(d.watcher.UTXOs()), "tip", d.watcher.Tip().Height)
	}
	return nil
}

// healthHandler serves /requests/<token> (held requests, psbtflow) and the health endpoints
// (health.go).
func (d *Daemon) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/requests/", d.flow.HTTPHandler())
	mux.Handle("/", healthHandler(d.watcher, d.pool, d.db, d.reqMetrics))
	return mux
}
