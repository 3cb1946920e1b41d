package bench

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// The ledger benchmark's sizes (issue 15: "p99 with 10k active and 100k settled rows").
const (
	ledgerActive  = 10_000  // outstanding spend exposure entries
	ledgerSettled = 100_000 // confirmed and invalidated entries
	ledgerAudit   = 200_000 // audit_log rows
	// ledgerSamples requests are measured at each size, after ledgerWarmup unmeasured ones.
	ledgerSamples = 1000
	ledgerWarmup  = 20
	// ledgerBlocks is the height of the header chain the settled entries' facts are in.
	ledgerBlocks = 1200
)

// BenchmarkLedgerSignPSBT: sign_psbt through psbtflow.Service — the real pipeline (decode,
// analysis, spend exposure, policy with a velocity window and a rate limit, signature, the
// request's state, exposure entry and audit row committed) on a real store in a temporary
// directory, with the Service's Run loop (holds, reconcile) going as in the daemon — on an
// empty database and on one with ledgerActive outstanding exposure entries, ledgerSettled settled
// ones and ledgerAudit audit rows, taking turns request by request. Requests go one after
// another; p50 and p99 per request, after the start-up sweep (measured apart).
// Records "ledger-p99": the p99 at the large ledger against the p99 at 0 rows in the same run.
func BenchmarkLedgerSignPSBT(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: skipped under -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emptyEnv := newLedgerEnv(ctx, b, 0, 0, 0)
	defer emptyEnv.close()
	fullEnv := newLedgerEnv(ctx, b, ledgerActive, ledgerSettled, ledgerAudit)
	defer fullEnv.close()
	b.ResetTimer()
	// The two databases take turns, request by request, so that what else the machine does
	// falls on both alike.
	var de, df []time.Duration
	for i := range ledgerWarmup + ledgerSamples {
		x, y := emptyEnv.sign(b, i), fullEnv.sign(b, i)
		if i >= ledgerWarmup {
			de, df = append(de, x), append(df, y)
		}
	}
	b.StopTimer()
	empty, full := statsOf(de), statsOf(df)
	full.fill, full.sweep = fullEnv.fill, fullEnv.sweep
	ratio := full.p99 / empty.p99
	b.ReportMetric(empty.p50, "empty_p50_ms")
	b.ReportMetric(empty.p99, "empty_p99_ms")
	b.ReportMetric(full.p50, "large_p50_ms")
	b.ReportMetric(full.p99, "large_p99_ms")
	b.ReportMetric(full.fill.Seconds(), "fill_s")
	b.ReportMetric(full.sweep.Seconds(), "start_sweep_s")
	b.ReportMetric(ratio, "x_p99")
	Record(Row{
		Key: "ledger-p99",
		Figure: fmt.Sprintf("sign_psbt through psbtflow.Service (real store), %dk active + %dk settled exposure rows, %dk audit rows",
			ledgerActive/1000, ledgerSettled/1000, ledgerAudit/1000),
		Value:    fmt.Sprintf("p99 %.2f ms (p50 %.2f ms)", full.p99, full.p50),
		Baseline: fmt.Sprintf("p99 %.2f ms at 0 rows (p50 %.2f ms)", empty.p99, empty.p50),
		Ratio:    fmt.Sprintf("%.2f×", ratio),
		Goal:     "≤ 1.5×",
		Met:      MetIf(ratio <= 1.5),
	})
}

type ledgerStats struct {
	p50, p99    float64 // milliseconds
	fill, sweep time.Duration
}

// lockedChain is the test wallet's view behind a lock (the Service's Run loop reads it while
// the benchmark adds coins).
type lockedChain struct {
	mu sync.Mutex
	c  *wallettest.Chain
}

func (l *lockedChain) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Coin(op)
}

func (l *lockedChain) Lookup(s []byte) (uint32, uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Lookup(s)
}

func (l *lockedChain) TipHeight() int32 { return l.c.TipHeight() }
func (l *lockedChain) Synced() bool     { return true }

// ledgerEnv is a Service on its own database holding active outstanding entries, settled
// settled ones and audit audit rows, its Run loop going, and the requests it will be sent.
type ledgerEnv struct {
	svc         *psbtflow.Service
	db          *store.DB
	client      string
	reqs        []string
	active      int
	fill, sweep time.Duration
	stop        func()
}

func newLedgerEnv(ctx context.Context, b *testing.B, active, settled, audit int) *ledgerEnv {
	w := wallettest.New(b)
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	e := &ledgerEnv{db: db, client: strings.Repeat("ab", 32), active: active}
	now := time.Now()
	// The watcher's header chain: the settled entries' facts are in its blocks (so the
	// reconcile's reorg check finds them in place, as on a real chain).
	facts := testfakes.NewFacts()
	blocks := []string{""}
	for range ledgerBlocks {
		facts.Mine(now, strings.Repeat("77", 32))
		blocks = append(blocks, facts.Tip().Hash.String())
	}
	t0 := time.Now()
	if err := fillLedger(ctx, db, e.client, now, blocks, active, settled, audit); err != nil {
		b.Fatal(err)
	}
	e.fill = time.Since(t0)
	pol, err := policy.Parse("bench.yaml", []byte("version: 1\nclients:\n  - {name: coordinator, pubkey: "+e.client+", rate_limit: 1000000/1h}\n"+
		"limits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 30d, max: 100000 BTC}, {window: 1d, max: 50000 BTC}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	// Coins for every request, made before the Service starts reading the view.
	e.reqs = make([]string, ledgerWarmup+ledgerSamples)
	for i := range e.reqs {
		value := btcutil.Amount(100_000 + i)
		op := w.AddCoin(b, 0, uint32(i%20), value)
		s, err := psbt.Encode(w.BuildPSBT(b, []wire.OutPoint{op}, 50_000, value-50_000-1_000, uint32(i%20)), psbt.Base64)
		if err != nil {
			b.Fatal(err)
		}
		e.reqs[i] = s
	}
	e.svc, err = psbtflow.NewService(w.Desc, w.Keys[1], &lockedChain{c: w.Chain}, func() *policy.Policy { return pol }, db,
		wallettest.Quiet, psbtflow.WithSpendFacts(facts))
	if err != nil {
		b.Fatal(err)
	}
	// The sweep a start begins with (loads the exposure, checks every entry against the
	// facts), then the Service's loop as in the daemon; requests are measured after it.
	t0 = time.Now()
	if err := e.svc.ReconcileExposure(ctx); err != nil {
		b.Fatal(err)
	}
	e.sweep = time.Since(t0)
	runCtx, cancel := context.WithCancel(ctx)
	var run sync.WaitGroup
	run.Add(1)
	go func() { defer run.Done(); _ = e.svc.Run(runCtx) }()
	e.stop = func() { cancel(); run.Wait() }
	return e
}

func (e *ledgerEnv) close() {
	e.stop()
	e.db.Close()
}

// sign sends request i and returns how long its answer took.
func (e *ledgerEnv) sign(b *testing.B, i int) time.Duration {
	t := time.Now()
	if _, err := e.svc.SignPSBT(context.Background(), nip46.Call{Client: e.client, ID: fmt.Sprint("bench-", i), Method: "sign_psbt", Params: []string{e.reqs[i]}}); err != nil {
		b.Fatalf("request %d with %d active entries: %v", i, e.active, err)
	}
	return time.Since(t)
}

func statsOf(d []time.Duration) ledgerStats {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	msOf := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return ledgerStats{p50: msOf(d[len(d)/2]), p99: msOf(d[len(d)*99/100])}
}

// fillLedger writes, in one transaction, active outstanding spend exposure entries (in fee-bump
// chains of three sharing an input, as RBF leaves them), settled ones (three in five confirmed
// over the last 60 days, the others invalidated; their facts in blocks[1:]), each with its signed request and audit row as
// the signing flow writes them (the same columns as store's reserve, BeginSignRequest and
// FinishDecision), and audit rows up to audit in all.
func fillLedger(ctx context.Context, db *store.DB, client string, now time.Time, blocks []string, active, settled, audit int) error {
	if active+settled+audit == 0 {
		return nil
	}
	return db.Tx(ctx, func(tx *sql.Tx) error {
		prep := func(q string) (*sql.Stmt, error) { return tx.PrepareContext(ctx, q) }
		req, err := prep(`INSERT INTO sign_requests(client_pubkey, request_id, method, psbt_sha256, unsigned_txid, state, result, error, created_at, updated_at)
			VALUES (?, ?, 'sign_psbt', ?, ?, 'signed', 'cHNidP8B', '', ?, ?)`)
		if err != nil {
			return err
		}
		led, err := prep(`INSERT INTO spend_ledger(txid, client_pubkey, request_id, outflow_sat, state, reserved_at, release_after, updated_at,
			conf_height, conf_hash, conf_at, invalid_by, invalid_height, invalid_hash) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		in, err := prep(`INSERT OR IGNORE INTO spend_ledger_inputs(outpoint, txid) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		aud, err := prep(`INSERT INTO audit_log(at, client_pubkey, request_id, method, decision, rule, reason, unsigned_txid, outflow_sat, fee_sat, analysis, policy_hash, explanation)
			VALUES (?, ?, ?, 'sign_psbt', 'signed', 'within_limits', 'within the limits; 1 partial signature(s) added', ?, ?, 1000, '{}', 'h', '[]')`)
		if err != nil {
			return err
		}
		hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
		rows := 0
		for i := range active + settled {
			txid, id := hash(fmt.Sprint("tx", i)), fmt.Sprint("old-", i)
			at := now.Add(-time.Duration(i%(90*24)) * time.Hour).Unix()
			state, confH, confHash, confAt, invBy, invH, invHash := store.LedgerOutstanding, 0, "", int64(0), "", 0, ""
			op := hash(fmt.Sprint("coin", i/3)) + ":0" // fee-bump chains of three
			if i >= active {
				op = hash(fmt.Sprint("settled-coin", i)) + ":1"
				h := 1 + i%(len(blocks)-1)
				if i%5 < 3 {
					state, confH, confHash, confAt = store.LedgerConfirmed, h, blocks[h], now.Add(-time.Duration(i%(60*24))*time.Hour).Unix()
				} else {
					state, invBy, invH, invHash = store.LedgerInvalidated, hash(fmt.Sprint("other", i)), h, blocks[h]
				}
			}
			if _, err := req.ExecContext(ctx, client, id, []byte(txid), txid, at, at); err != nil {
				return err
			}
			if _, err := led.ExecContext(ctx, txid, client, id, 1_000+i%1_000, state, at, at, confH, confHash, confAt, invBy, invH, invHash); err != nil {
				return err
			}
			if _, err := in.ExecContext(ctx, op, txid); err != nil {
				return err
			}
			if rows < audit {
				if _, err := aud.ExecContext(ctx, at, client, id, txid, 1_000+i%1_000); err != nil {
					return err
				}
				rows++
			}
		}
		for ; rows < audit; rows++ {
			at := now.Add(-time.Duration(rows%(90*24)) * time.Hour).Unix()
			if _, err := aud.ExecContext(ctx, at, client, fmt.Sprint("other-", rows), "", 0); err != nil {
				return err
			}
		}
		return nil
	})
}
