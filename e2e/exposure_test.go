package e2e

// exposure_test.go — spend exposure end to end (issue 11, findings 1 and 2): cosigner A reaches
// ElectrumX through a lying proxy that can invent a mempool spend of a wallet coin and hide a
// confirmed transaction from every history (answering with statuses that match its lies, as a
// malicious server would). A signs for a client that withholds the transaction; neither lie
// moves A's exposure; the operator ends the withheld signature with `cosigner exposure
// invalidate`, co-signed by B through the normal path, and the exposure ends only once that
// transaction is confirmed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	nip46wire "github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/signer/cosign"
)

// lyingElectrum is an Electrum proxy that speaks the protocol: it tracks each request's method
// and params so it can rewrite the answers, and answers blockchain.transaction.get for the
// transactions it invents itself. Lies (while set): invent — a mempool transaction spending a
// given coin, listed in the coin's script history; hide — a transaction removed from every
// history. Every script status it passes on (subscribe answers, notifications) is recomputed
// from the history it would answer, so the watcher's status check cannot tell.
type lyingElectrum struct {
	t        *testing.T
	upstream string // host:port
	ln       net.Listener
	side     *electrum.Client // the proxy's own connection, for true histories

	mu       sync.Mutex
	invented map[string]inventedTx // scripthash → the invented spend listed in its history
	raw      map[string]string     // txid → raw hex of an invented transaction
	hidden   map[string]bool       // txid → hidden from every history
	conns    []net.Conn
	wg       sync.WaitGroup
}

type inventedTx struct{ txid string }

type rpcMsg struct {
	JSONRPC string            `json:"jsonrpc,omitempty"`
	ID      json.RawMessage   `json:"id,omitempty"`
	Method  string            `json:"method,omitempty"`
	Params  []json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage   `json:"result,omitempty"`
	Error   json.RawMessage   `json:"error,omitempty"`
}

type histEntry struct {
	TxHash string `json:"tx_hash"`
	Height int32  `json:"height"`
	Fee    *int64 `json:"fee,omitempty"`
}

func newLyingElectrum(ctx context.Context, t *testing.T, upstream string) *lyingElectrum {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	side, err := electrum.Dial(ctx, "tcp://"+upstream, electrum.Options{ClientName: "liar"})
	if err != nil {
		t.Fatal(err)
	}
	l := &lyingElectrum{t: t, upstream: upstream, ln: ln, side: side, invented: map[string]inventedTx{}, raw: map[string]string{}, hidden: map[string]bool{}}
	l.wg.Add(1)
	go l.accept()
	return l
}

func (l *lyingElectrum) URL() string { return "tcp://" + l.ln.Addr().String() }

func (l *lyingElectrum) Close() {
	l.ln.Close()
	l.Cut()
	l.wg.Wait()
	l.side.Close()
}

// Cut closes every connection: the client reconnects and resubscribes, seeing the lies in force.
func (l *lyingElectrum) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// Invent makes the server report tx (spending a coin paying scriptHash) in that script's
// mempool history.
func (l *lyingElectrum) Invent(scriptHash string, tx *wire.MsgTx) {
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.invented[scriptHash] = inventedTx{txid: tx.TxHash().String()}
	l.raw[tx.TxHash().String()] = hex.EncodeToString(buf.Bytes())
}

// Hide removes txid from every history; Truth ends every lie.
func (l *lyingElectrum) Hide(txid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hidden[txid] = true
}

func (l *lyingElectrum) Truth() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.invented, l.hidden = map[string]inventedTx{}, map[string]bool{}
}

func (l *lyingElectrum) accept() {
	defer l.wg.Done()
	for {
		down, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.upstream)
		if err != nil {
			down.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, down, up)
		l.mu.Unlock()
		c := &lieConn{l: l, down: down, up: up, pending: map[string]rpcMsg{}}
		l.wg.Add(2)
		go func() { defer l.wg.Done(); c.requests(); up.Close() }()
		go func() { defer l.wg.Done(); c.answers(); down.Close() }()
	}
}

type lieConn struct {
	l        *lyingElectrum
	down, up net.Conn
	wmu      sync.Mutex // writes to down
	mu       sync.Mutex
	pending  map[string]rpcMsg // id → request
}

func (c *lieConn) writeDown(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.down.Write(append(b, '\n'))
}

func decodeLine(line []byte) ([]rpcMsg, bool, error) {
	line = bytes.TrimSpace(line)
	if len(line) > 0 && line[0] == '[' {
		var ms []rpcMsg
		err := json.Unmarshal(line, &ms)
		return ms, true, err
	}
	var m rpcMsg
	err := json.Unmarshal(line, &m)
	return []rpcMsg{m}, false, err
}

func encodeMsgs(ms []rpcMsg, batch bool) []byte {
	var b []byte
	if batch {
		b, _ = json.Marshal(ms)
	} else {
		b, _ = json.Marshal(ms[0])
	}
	return b
}

// requests forwards the client's requests, remembering them, and answers transaction.get of an
// invented transaction itself.
func (c *lieConn) requests() {
	r := bufio.NewReaderSize(c.down, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			ms, batch, derr := decodeLine(line)
			if derr != nil {
				c.up.Write(line)
			} else {
				var fwd []rpcMsg
				for _, m := range ms {
					if m.Method == "blockchain.transaction.get" && len(m.Params) > 0 {
						var id string
						json.Unmarshal(m.Params[0], &id)
						c.l.mu.Lock()
						raw, ok := c.l.raw[id]
						c.l.mu.Unlock()
						if ok {
							res, _ := json.Marshal(raw)
							c.writeDown(encodeMsgs([]rpcMsg{{JSONRPC: "2.0", ID: m.ID, Result: res}}, false))
							continue
						}
					}
					c.mu.Lock()
					c.pending[string(m.ID)] = m
					c.mu.Unlock()
					fwd = append(fwd, m)
				}
				if len(fwd) > 0 {
					c.up.Write(append(encodeMsgs(fwd, batch && len(fwd) > 1), '\n'))
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// answers rewrites the server's answers and notifications per the lies in force.
func (c *lieConn) answers() {
	r := bufio.NewReaderSize(c.up, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			ms, batch, derr := decodeLine(line)
			if derr != nil {
				c.writeDown(bytes.TrimRight(line, "\n"))
			} else {
				for i, m := range ms {
					ms[i] = c.rewrite(m)
				}
				c.writeDown(encodeMsgs(ms, batch))
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *lieConn) rewrite(m rpcMsg) rpcMsg {
	if m.Method == "blockchain.scripthash.subscribe" && len(m.Params) == 2 { // notification
		var sh string
		json.Unmarshal(m.Params[0], &sh)
		if st, ok := c.l.status(sh); ok {
			m.Params[1], _ = json.Marshal(st)
		}
		return m
	}
	if len(m.ID) == 0 || len(m.Result) == 0 {
		return m
	}
	c.mu.Lock()
	req, ok := c.pending[string(m.ID)]
	delete(c.pending, string(m.ID))
	c.mu.Unlock()
	if !ok || len(req.Params) == 0 {
		return m
	}
	var sh string
	json.Unmarshal(req.Params[0], &sh)
	switch req.Method {
	case "blockchain.scripthash.subscribe":
		if st, ok := c.l.status(sh); ok {
			m.Result, _ = json.Marshal(st)
		}
	case "blockchain.scripthash.get_history":
		var h []histEntry
		if json.Unmarshal(m.Result, &h) == nil {
			if alt, changed := c.l.alter(sh, h); changed {
				m.Result, _ = json.Marshal(alt)
			}
		}
	}
	return m
}

// alter applies the lies to the history of sh.
func (l *lyingElectrum) alter(sh string, h []histEntry) ([]histEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []histEntry
	changed := false
	for _, e := range h {
		if l.hidden[e.TxHash] {
			changed = true
			continue
		}
		out = append(out, e)
	}
	if inv, ok := l.invented[sh]; ok {
		fee := int64(1000)
		out = append(out, histEntry{TxHash: inv.txid, Height: 0, Fee: &fee})
		changed = true
	}
	if out == nil {
		out = []histEntry{}
	}
	return out, changed
}

// status is the status of sh's lying history, when the lies change it.
func (l *lyingElectrum) status(sh string) (any, bool) {
	l.mu.Lock()
	lying := len(l.hidden) > 0 || len(l.invented) > 0
	l.mu.Unlock()
	if !lying {
		return nil, false
	}
	var h []histEntry
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.side.Call(ctx, "blockchain.scripthash.get_history", []any{sh}, &h); err != nil {
		return nil, false
	}
	alt, changed := l.alter(sh, h)
	if !changed {
		return nil, false
	}
	if len(alt) == 0 {
		return nil, true
	}
	items := make([]chainwatch.HistoryItem, len(alt))
	for i, e := range alt {
		id, _ := chainhash.NewHashFromStr(e.TxHash)
		items[i] = chainwatch.HistoryItem{TxHash: *id, Height: e.Height}
	}
	st, err := chainwatch.ElectrumStatus(items)
	if err != nil {
		return nil, false
	}
	return st, true
}

// exposureList is `cosigner exposure list --all --json` on a daemon.
type exposureList struct {
	Windows []struct {
		Window      string `json:"window"`
		ExposureSat int64  `json:"exposure_sat"`
	} `json:"windows"`
	Entries []struct {
		TxID       string `json:"txid"`
		State      string `json:"state"`
		OutflowSat int64  `json:"outflow_sat"`
		InvalidBy  string `json:"invalidated_by"`
	} `json:"entries"`
}

func readExposure(ctx context.Context, t *testing.T, d *scenario.Daemon) exposureList {
	t.Helper()
	out, err := d.Cosigner(ctx, "exposure", "list", "--all", "--json")
	if err != nil {
		t.Fatalf("exposure list: %v\n%s", err, out)
	}
	var x exposureList
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("exposure list --json: %v\n%s", err, out)
	}
	return x
}

func (x exposureList) state(txid string) string {
	for _, e := range x.Entries {
		if e.TxID == txid {
			return e.State
		}
	}
	return "absent"
}

func (x exposureList) total() int64 {
	if len(x.Windows) == 0 {
		return -1
	}
	return x.Windows[0].ExposureSat
}

// waitExposure polls A's exposure until cond holds (bounded; no timing assertion).
func waitExposure(ctx context.Context, t *testing.T, d *scenario.Daemon, what string, cond func(exposureList) bool) exposureList {
	t.Helper()
	deadline := time.Now().Add(progress)
	for {
		x := readExposure(ctx, t, d)
		if cond(x) {
			return x
		}
		if time.Now().After(deadline) {
			t.Fatalf("exposure never reached %s: %+v", what, x)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitUTXO(ctx context.Context, t *testing.T, d *scenario.Daemon, op wire.OutPoint, present bool) chainwatch.UTXO {
	t.Helper()
	var found chainwatch.UTXO
	if _, err := d.WaitStatus(ctx, progress, func(st chainwatch.Status) bool {
		for _, u := range st.UTXOs {
			if u.OutPoint == op {
				found = u
				return present
			}
		}
		return !present
	}); err != nil {
		t.Fatalf("waiting for %s to be unspent=%v in %s's view: %v", op, present, d.Name, err)
	}
	return found
}

// buildToVault builds an unsigned PSBT spending coin, paying pay to the cold vault and the rest
// (less the fee) to the wallet's change index changeIdx.
func buildToVault(ctx context.Context, t *testing.T, p *scenario.Pair, coin chainwatch.UTXO, pay btcutil.Amount, vaultIdx, changeIdx uint32) *btcpsbt.Packet {
	t.Helper()
	to, err := p.Vault.PkScript(0, vaultIdx)
	if err != nil {
		t.Fatal(err)
	}
	pays := []psbt.Payment{{PkScript: to, Amount: pay}}
	params, err := psbt.NewSelectParams(p.Descriptor, pays)
	if err != nil {
		t.Fatal(err)
	}
	c := psbt.UTXO{OutPoint: coin.OutPoint, Coin: psbt.Coin{Value: coin.Value, PkScript: coin.PkScript, Branch: coin.Branch, Index: coin.Index, Height: coin.Height}}
	sel, err := psbt.Select([]psbt.UTXO{c}, pay, 3, params)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := psbt.Build(ctx, p.Descriptor, sel, pays, psbt.BuildOptions{ChangeIndex: changeIdx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestExposureAgainstLyingServerAndInvalidate: see the file comment.
func TestExposureAgainstLyingServerAndInvalidate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	network, err := devnet.Start(ctx, devnet.Config{Dir: dir + "/network"})
	if err != nil {
		t.Fatal(err)
	}
	defer network.Close()
	liar := newLyingElectrum(ctx, t, network.ElectrumAddr())
	defer liar.Close()

	clientSK := nostr.GeneratePrivateKey()
	clientPK, _ := nostr.GetPublicKey(clientSK)
	npub, _ := nip19.EncodePublicKey(clientPK)
	policyA := `version: 1
clients:
  - {name: app, pubkey: ` + npub + `, methods: [sign_psbt]}
  - {name: cosigner_b, pubkey: ` + scenario.VarNPubB + `, methods: [sign_psbt]}
descriptors:
  cold_vault:
    descriptor: "` + scenario.VarVault + `"
limits:
  max_per_tx: 5 BTC
  velocity: [{window: 30d, max: 1 BTC}]
automations:
  - name: invalidations
    trigger: {balance_above: 1000 BTC}
    action:
      sweep: {to: descriptor:cold_vault}
    fee: {target_blocks: 6, max_feerate: 50 sat/vB, fallback: 2 sat/vB}
    cosigners:
      - "` + scenario.VarBunkerB + `"
    signatures: 2
    timeout: 10s
`
	policyB := `version: 1
clients:
  - {name: cosigner_a, pubkey: ` + scenario.VarNPubA + `, methods: [sign_psbt]}
  - {name: app, pubkey: ` + npub + `, methods: [sign_psbt]}
descriptors:
  cold_vault:
    descriptor: "` + scenario.VarVault + `"
limits:
  max_per_tx: 5 BTC
`
	p, stop := startPair(ctx, t, scenario.PairOptions{Net: network, PolicyA: policyA, PolicyB: policyB,
		ExtraEnvA: []string{"COSIGNER_ELECTRUM_URL=" + liar.URL()}})
	defer stop()
	defer func() {
		if t.Failed() {
			t.Logf("A's exposure lines:\n%s", grepLog(t, p.A, 40, "spend exposure", "coin spent", "funding seen"))
		}
	}()

	op1 := deposit(ctx, t, p, btcutil.SatoshiPerBitcoin, 0)
	op2 := deposit(ctx, t, p, btcutil.SatoshiPerBitcoin, 0)
	coin1, coin2 := waitUTXO(ctx, t, p.A, op1, true), waitUTXO(ctx, t, p.A, op2, true)
	if _, err := p.Net.Mine(ctx, 1); err != nil { // both deposits confirmed
		t.Fatal(err)
	}

	co := cosign.NewCoordinator(clientSK, cosign.CoordinatorOptions{Timeout: time.Minute, Descriptor: p.Descriptor})
	defer co.Close()
	bunkerA, err := p.A.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The client gets A's signature on 0.4 BTC to the vault, and withholds it.
	t1 := buildToVault(ctx, t, p, coin1, 40_000_000, 0, 7)
	t1ID := t1.UnsignedTx.TxHash().String()
	if _, err := co.Ask(ctx, bunkerA, "withheld-1", t1, nil); err != nil {
		t.Fatalf("A refused the first payment: %v", err)
	}
	x := readExposure(ctx, t, p.A)
	base := x.total()
	if x.state(t1ID) != "outstanding" || base < 40_000_000 || base > 40_100_000 {
		t.Fatalf("after the withheld signature: %+v", x)
	}
	// 0.7 BTC more with the other coin would exceed 1 BTC in 30 days.
	var re *nip46wire.RemoteError
	if _, err := co.Ask(ctx, bunkerA, "over-1", buildToVault(ctx, t, p, coin2, 70_000_000, 1, 8), nil); !errors.As(err, &re) || re.Code() != nip46wire.CodePolicyDenied {
		t.Fatalf("a payment over the window with the withheld one outstanding: %v; want policy_denied", err)
	}

	t.Run("invented mempool spend moves nothing", func(t *testing.T) {
		fake := wire.NewMsgTx(2)
		fake.AddTxIn(wire.NewTxIn(&op1, nil, nil))
		fake.AddTxOut(wire.NewTxOut(int64(coin1.Value)-5_000, []byte{0x51, 0x20, 0x01, 0x02}))
		liar.Invent(chainwatch.ScriptHash(coin1.PkScript), fake)
		liar.Cut()
		waitUTXO(ctx, t, p.A, op1, false)
		if _, err := p.A.WaitLog(ctx, progress, `msg="coin spent"`, "spent_by="+fake.TxHash().String()); err != nil {
			t.Fatal(err)
		}
		if x := readExposure(ctx, t, p.A); x.state(t1ID) != "outstanding" || x.total() != base {
			t.Fatalf("after an invented mempool spend: %+v; want %s outstanding, exposure %d", x, t1ID, base)
		}
		// The invented spend disappears: still nothing moves.
		liar.Truth()
		liar.Cut()
		waitUTXO(ctx, t, p.A, op1, true)
		if x := readExposure(ctx, t, p.A); x.state(t1ID) != "outstanding" || x.total() != base {
			t.Fatalf("after the invented spend disappeared: %+v", x)
		}
	})

	t.Run("invalidate ends the exposure once confirmed", func(t *testing.T) {
		out, err := p.A.Cosigner(ctx, "exposure", "invalidate", t1ID)
		if err != nil {
			t.Fatalf("exposure invalidate: %v\n%s", err, out)
		}
		id, _, _ := strings.Cut(strings.TrimSpace(out), ":")
		pr, err := p.WaitProposal(ctx, progress, func(pr scenario.Proposal) bool { return pr.ID == id && pr.State == "broadcast" })
		if err != nil {
			t.Fatal(err)
		}
		h, _ := chainhash.NewHashFromStr(pr.TxID)
		tx, err := p.Net.RPC().GetRawTransaction(h)
		if err != nil {
			t.Fatalf("invalidation %s not on btcd: %v", pr.TxID, err)
		}
		if ins := tx.MsgTx().TxIn; len(ins) != 1 || ins[0].PreviousOutPoint != op1 {
			t.Fatalf("invalidation %s does not spend %s", pr.TxID, op1)
		}
		// In the mempool only: the withheld signature still counts.
		if x := readExposure(ctx, t, p.A); x.state(t1ID) != "outstanding" || x.total() != base {
			t.Fatalf("with the invalidation in the mempool: %+v", x)
		}
		if _, err := p.Net.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		x := waitExposure(ctx, t, p.A, t1ID+" invalidated", func(x exposureList) bool { return x.state(t1ID) == "invalidated" })
		if x.total() != pr.FeeSat || x.state(pr.UnsignedTxID) != "confirmed" {
			t.Fatalf("after the invalidation confirmed: %+v; want only its fee %d counted", x, pr.FeeSat)
		}
	})

	t.Run("hidden confirmed spend moves nothing", func(t *testing.T) {
		bunkerB, err := p.B.BunkerURI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t2 := buildToVault(ctx, t, p, coin2, 30_000_000, 2, 9)
		t2ID := t2.UnsignedTx.TxHash().String()
		sa, err := co.Ask(ctx, bunkerA, "paid-2", t2, nil)
		if err != nil {
			t.Fatalf("A: %v", err)
		}
		sb, err := co.Ask(ctx, bunkerB, "paid-2", t2, nil)
		if err != nil {
			t.Fatalf("B: %v", err)
		}
		both, err := psbt.Combine(sa, sb)
		if err != nil {
			t.Fatal(err)
		}
		final, err := psbt.Finalize(p.Descriptor, both)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Net.RPC().SendRawTransaction(final, false); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Net.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		before := waitExposure(ctx, t, p.A, t2ID+" confirmed", func(x exposureList) bool { return x.state(t2ID) == "confirmed" })
		// The server hides the confirmed spend: the coin looks unspent again.
		liar.Hide(final.TxHash().String())
		liar.Cut()
		waitUTXO(ctx, t, p.A, op2, true)
		st, err := p.A.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Net.Mine(ctx, 1); err != nil { // a new tip: the daemon reconciles on it
			t.Fatal(err)
		}
		if _, err := p.A.WaitStatus(ctx, progress, func(s chainwatch.Status) bool { return s.Tip.Height > st.Tip.Height }); err != nil {
			t.Fatal(err)
		}
		for range 6 { // several reconcile ticks (2 s each); a regression shows as a move
			if x := readExposure(ctx, t, p.A); x.state(t2ID) != "confirmed" || x.total() != before.total() {
				t.Fatalf("after the server hid the confirmed spend: %+v; want %s confirmed, exposure %d", x, t2ID, before.total())
			}
			time.Sleep(time.Second)
		}
		liar.Truth()
		liar.Cut()
		waitUTXO(ctx, t, p.A, op2, false)
	})
}
