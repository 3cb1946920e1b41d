package chaos

// The chaos test: a real `cosigner run` daemon on the local test network, several NIP-46 clients
// sending a mix of sign_psbt requests (allowed, denied, held then approved, and, as the spend
// exposure grows, over the velocity window), while the daemon is killed with SIGKILL at random
// moments, relays are stopped and started, and ElectrumX is restarted. After every restart and
// at the end it checks, against independent sources (the clients' own records and btcd):
//   - no request the daemon acknowledged is lost, and none is decided twice;
//   - every signature the clients received is inside the policy (cap, deny list, approvals, and
//     the velocity window over spend exposure);
//   - the ledger's spend exposure equals a sum computed from btcd (gettxout, the blocks) and the
//     signatures the clients received.

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/chainwatch"
	nip46e2e "github.com/custodyagents/cosigner/e2e/nip46"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// The policy's numbers, in satoshis.
const (
	maxPerTx     = 30_000_000 // 0.3 BTC per transaction
	holdFrom     = 5_000_000  // outflow from 0.05 BTC is held for one approval
	velocityMax  = 60_000_000 // 0.6 BTC of exposure in 30 days
	smallCoin    = 2_000_000
	largeCoin    = 8_000_000
	smallPayment = 1_000_000
	largePayment = 6_000_000
)

// kind is what a request is meant to exercise.
type kind int

const (
	kindSmall   kind = iota // allowed (until the velocity window is full)
	kindDenied              // pays the deny-listed address
	kindLarge               // held, then approved by the approver
	kindOverCap             // above max_per_tx
)

func (k kind) String() string { return [...]string{"small", "denied", "large", "over_cap"}[k] }

// sent is one request as its client recorded it.
type sent struct {
	client    int
	id        string
	kind      kind
	coin      wire.OutPoint
	txid      chainhash.Hash // unsigned txid
	outflow   int64          // inputs − change (payment + fee)
	dest      string
	answer    nip46e2e.Response
	answered  bool
	signed    bool // answered with a PSBT carrying our partial signature
	broadcast bool
}

type wallet struct {
	mu    sync.Mutex
	coins []psbt.UTXO // the funded coins, by kind: small ones first, then large ones
	prev  map[chainhash.Hash]*wire.MsgTx
}

func (w *wallet) PrevTx(_ context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if tx, ok := w.prev[txid]; ok {
		return tx, nil
	}
	return nil, fmt.Errorf("no transaction %s", txid)
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "cosigner-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	}()
	logf, err := os.Create(filepath.Join(dir, "harness.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: dir, MaxPerTx: "0.3 BTC", Race: true,
		ExtraEnv: []string{"COSIGNER_LOOKAHEAD=100", "COSIGNER_CLIENT_RATE=50", "COSIGNER_CLIENT_BURST=200"},
		Logger:   slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	defer env.LogOnFailure(t, 80)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 42))
	var rngMu sync.Mutex
	intN := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
	perm := func(n int) []int { rngMu.Lock(); defer rngMu.Unlock(); return rng.Perm(n) }
	t.Logf("seed %d; harness log in %s", seed, dir)

	// The clients (three with sign_psbt) and the approver.
	const nClients = 3
	sks := make([]string, nClients)
	clientPKs = make([]string, nClients)
	for i := range sks {
		sks[i] = nostr.GeneratePrivateKey()
		clientPKs[i], _ = nostr.GetPublicKey(sks[i])
	}
	approverSK := nostr.GeneratePrivateKey()
	approverPK, _ := nostr.GetPublicKey(approverSK)
	denyKey, _ := btcec.NewPrivateKey()
	denyAddr, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(denyKey.PubKey().SerializeCompressed()), env.Net.Params())
	if err := env.WritePolicyText(chaosPolicy(t, sks, approverPK, denyAddr.EncodeAddress())); err != nil {
		t.Fatal(err)
	}
	if err := restartDaemon(ctx, env, false); err != nil { // the policy is read at start
		t.Fatal(err)
	}

	// Fund 40 small and 20 large coins on receive indexes 0..59, in one transaction.
	w := &wallet{prev: map[chainhash.Hash]*wire.MsgTx{}}
	var outs []*wire.TxOut
	for i := 0; i < 60; i++ {
		v := int64(smallCoin)
		if i >= 40 {
			v = largeCoin
		}
		pk, err := env.Descriptor.PkScript(0, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, wire.NewTxOut(v, pk))
	}
	fund, err := env.Net.FundOutputs(ctx, outs, devnetFund())
	if err != nil {
		t.Fatal(err)
	}
	w.prev[fund.TxHash()] = fund
	for i, o := range outs {
		w.coins = append(w.coins, psbt.UTXO{OutPoint: wire.OutPoint{Hash: fund.TxHash(), Index: uint32(i)},
			Coin: psbt.Coin{Value: btcutil.Amount(o.Value), PkScript: o.PkScript, Branch: 0, Index: uint32(i)}})
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitStatus(ctx, 2*time.Minute, func(s chainwatch.Status) bool { return len(s.UTXOs) >= 60 }); err != nil {
		t.Fatal(err)
	}

	// Connect the clients and the approver (fresh bunker secrets).
	relays := env.Net.RelayURLs()
	clients := make([]*nip46e2e.Client, nClients)
	for i := range clients {
		clients[i] = dialConnected(ctx, t, env, sks[i], relays, "")
	}
	approver := dialConnected(ctx, t, env, approverSK, relays, "approve,psbt_status")

	// The run: requests from every client in turn, with chaos between them.
	const total = 300
	var (
		mu                         sync.Mutex
		records                    []*sent
		kills                      int
		relayOps, electrumRestarts int
	)
	payee, _ := btcec.NewPrivateKey()
	payeeAddr, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(payee.PubKey().SerializeCompressed()), env.Net.Params())
	changeIndex := uint32(0)
	build := func(k kind) (*sent, string) {
		w.mu.Lock()
		pick := func(from, n int) (psbt.UTXO, bool) {
			for _, j := range perm(n) {
				if c := w.coins[from+j]; c.Value > 0 {
					return c, true
				}
			}
			return psbt.UTXO{}, false
		}
		var c psbt.UTXO
		var ok bool
		amount := int64(smallPayment)
		dest := payeeAddr.EncodeAddress()
		switch k {
		case kindSmall:
			c, ok = pick(0, 40)
		case kindDenied:
			c, ok = pick(0, 40)
			dest = denyAddr.EncodeAddress()
		case kindLarge, kindOverCap:
			c, ok = pick(40, 20)
			amount = largePayment
		}
		w.mu.Unlock()
		if !ok {
			return nil, ""
		}
		w.mu.Lock()
		changeIndex++
		ci := changeIndex % 90
		inputs := []psbt.UTXO{c}
		if k == kindOverCap {
			// Five large coins: 0.4 BTC, above max_per_tx.
			inputs = nil
			var total btcutil.Amount
			for _, j := range perm(20)[:5] {
				inputs = append(inputs, w.coins[40+j])
				total += w.coins[40+j].Value
			}
			amount = int64(total) - 1_000_000 - 20_000
		}
		w.mu.Unlock()
		destAddr, _ := btcutil.DecodeAddress(dest, env.Net.Params())
		pays := []psbt.Payment{{Address: destAddr, Amount: btcutil.Amount(amount)}}
		params, err := psbt.NewSelectParams(env.Descriptor, pays)
		if err != nil {
			t.Fatalf("select params: %v", err)
		}
		sel, err := psbt.Select(inputs, btcutil.Amount(amount), 2, params)
		if err != nil {
			t.Fatalf("select %s: %v", k, err)
		}
		if len(sel.Inputs) != len(inputs) {
			t.Fatalf("select %s: %d inputs chosen of %d", k, len(sel.Inputs), len(inputs))
		}
		p, err := psbt.Build(ctx, env.Descriptor, sel, pays, psbt.BuildOptions{ChangeIndex: ci}, w)
		if err != nil {
			t.Fatalf("build %s: %v", k, err)
		}
		var buf bytes.Buffer
		if err := p.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
		s := &sent{kind: k, txid: p.UnsignedTx.TxHash(), outflow: int64(sel.InputTotal - sel.Change), dest: dest}
		for _, in := range p.UnsignedTx.TxIn {
			s.coin = in.PreviousOutPoint
		}
		return s, base64.StdEncoding.EncodeToString(buf.Bytes())
	}

	// send publishes the request and waits for its final answer. While none comes (the daemon
	// may be down, a relay may have been stopped, an answer may have been lost with a killed
	// relay) it sends the same request again — same request id and params in a new event, as
	// a NIP-46 client retries; the daemon answers a request it knows from its store.
	send := func(c *nip46e2e.Client, id, method string, params ...string) nip46e2e.Response {
		for attempt := 0; ; attempt++ {
			ev, err := seal(c, id, method, params...)
			if err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
			r, err := c.Send(rctx, ev, id)
			rcancel()
			if err == nil {
				return r
			}
			if ctx.Err() != nil {
				t.Fatalf("request %s never answered after %d attempts: %v", id, attempt+1, err)
			}
			t.Logf("request %s (%s) not answered yet (attempt %d): sending it again", id, method, attempt+1)
		}
	}

	// chaos is the n-th disruption: every second one a SIGKILL of the daemon (restarted at
	// once), the others alternately a relay stopped and started and an ElectrumX restart.
	var chaosMu sync.Mutex
	chaos := func(n int) {
		chaosMu.Lock()
		defer chaosMu.Unlock()
		switch {
		case n%2 == 0:
			if err := env.KillDaemon(); err != nil {
				t.Errorf("kill: %v", err)
			}
			kills++
			if err := restartDaemon(ctx, env, true); err != nil {
				t.Fatalf("restart after kill %d: %v", kills, err)
			}
		case n%4 == 1:
			r := intN(len(relays))
			if err := env.Net.StopRelay(r); err != nil {
				t.Fatalf("stop relay: %v", err)
			}
			time.Sleep(time.Duration(200+intN(800)) * time.Millisecond)
			if err := env.Net.StartRelay(r); err != nil {
				t.Fatalf("start relay: %v", err)
			}
			relayOps++
		default:
			if err := env.Net.RestartElectrumX(ctx); err != nil {
				t.Fatalf("restart ElectrumX: %v", err)
			}
			electrumRestarts++
		}
	}

	// broadcast completes a signed small payment with key B (BDK), broadcasts it and mines a
	// block, so that the ledger sees confirmations and the invalidation of the other
	// signatures on the same coin. The coin leaves the pool of coins requests are built from.
	var broadcasts int
	broadcast := func(s *sent) {
		chaosMu.Lock()
		defer chaosMu.Unlock()
		// Another client's signed payment may have spent this coin already (both were built
		// before it was broadcast): a second spend would be refused by the node.
		w.mu.Lock()
		spent := false
		for _, c := range w.coins {
			if c.OutPoint == s.coin && c.Value == 0 {
				spent = true
			}
		}
		w.mu.Unlock()
		if spent {
			return
		}
		var withB struct {
			PSBT string `json:"psbt"`
		}
		if err := env.BDKJSON(ctx, &withB, "sign", "--network", "regtest", "--descriptor", env.BDKDescriptor, "--psbt", s.answer.Result); err != nil {
			t.Errorf("key B's signature on %s: %v", s.txid, err)
			return
		}
		for attempt := 0; ; attempt++ {
			_, err := env.Finalize(ctx, withB.PSBT)
			if err == nil {
				break
			}
			if attempt == 5 || ctx.Err() != nil {
				t.Errorf("finalize and broadcast %s: %v", s.txid, err)
				return
			}
			time.Sleep(2 * time.Second)
		}
		if _, err := env.Net.Mine(ctx, 1); err != nil {
			t.Errorf("mine: %v", err)
			return
		}
		w.mu.Lock()
		for i, c := range w.coins {
			if c.OutPoint == s.coin {
				w.coins[i].Value = 0 // spent: not chosen again
			}
		}
		w.mu.Unlock()
		mu.Lock()
		s.broadcast = true
		broadcasts++
		mu.Unlock()
	}

	var wg sync.WaitGroup
	perClient := total / nClients
	var answeredCount int
	for ci := range clients {
		wg.Add(1)
		go func(ci int) {
			defer wg.Done()
			for j := 0; j < perClient && !t.Failed() && ctx.Err() == nil; j++ {
				k := kindSmall
				switch x := intN(10); {
				case x == 0:
					k = kindOverCap
				case x <= 2:
					k = kindDenied
				case x == 3:
					k = kindLarge
				}
				s, psbtText := build(k)
				if s == nil {
					continue
				}
				s.client = ci
				id := newRequestID()
				s.id = id
				mu.Lock()
				records = append(records, s)
				mu.Unlock()
				var r nip46e2e.Response
				if k == kindLarge {
					r = sendHeld(ctx, t, clients[ci], approver, id, psbtText, s.txid)
				} else {
					r = send(clients[ci], id, "sign_psbt", psbtText)
				}
				mu.Lock()
				s.answer, s.answered = r, true
				s.signed = r.Error == "" && hasOurSignature(t, r.Result, psbtText)
				answeredCount++
				n := answeredCount
				mu.Unlock()
				if s.signed && k == kindSmall && intN(10) == 0 {
					broadcast(s)
				}
				if n%9 == 0 {
					chaos(n / 9)
					checkAnswered(ctx, t, env, snapshot(&mu, &records))
				}
			}
		}(ci)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d requests answered; %d SIGKILLs, %d relay stops, %d ElectrumX restarts, %d transactions broadcast", len(records), kills, relayOps, electrumRestarts, broadcasts)
	if len(records) < total {
		t.Errorf("only %d requests sent; the test wants %d", len(records), total)
	}
	if kills < 10 {
		t.Errorf("only %d kills; the test wants at least 10", kills)
	}
	counts := map[string]int{}
	for _, s := range snapshot(&mu, &records) {
		outcome := "signed"
		if !s.signed {
			outcome, _, _ = strings.Cut(s.answer.Error, ":")
		}
		counts[s.kind.String()+"/"+outcome]++
	}
	t.Logf("outcomes by kind: %v", counts)
	if counts["small/signed"] == 0 || counts["large/signed"] == 0 || counts["denied/policy_denied"] == 0 || counts["small/policy_denied"]+counts["large/policy_denied"] == 0 {
		t.Errorf("the mix did not exercise every path (signed small and large, denied destination, over the velocity window): %v", counts)
	}
	final := snapshot(&mu, &records)
	checkAnswered(ctx, t, env, final)
	checkDecidedOnce(ctx, t, env, final)
	checkPolicy(ctx, t, env, final)
	checkExposure(ctx, t, env, final)
}

// chaosPolicy: three clients with sign_psbt; an approver; max 0.3 BTC per transaction, 0.6 BTC
// of spend exposure in 30 days, a deny-listed address; 0.05 BTC and more is held for one approval.
func chaosPolicy(t *testing.T, clientSKs []string, approverPK, denied string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: 1\nclients:\n")
	for i, sk := range clientSKs {
		pk, _ := nostr.GetPublicKey(sk)
		npub, err := nip19.EncodePublicKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - {name: c%d, pubkey: %s, methods: [sign_psbt, psbt_status]}\n", i, npub)
	}
	fmt.Fprintf(&b, "approvers:\n  - {name: alice, pubkey: %s}\n", approverPK)
	fmt.Fprintf(&b, "limits:\n  max_per_tx: %d sat\n  velocity:\n    - {window: 30d, max: %d sat}\n  destinations:\n    deny: [%s]\n", maxPerTx, velocityMax, denied)
	fmt.Fprintf(&b, "rules:\n  - name: large\n    match: {min_outflow: %d sat}\n    action: hold\n    hold: {approvals: 1, approvers: [alice]}\n  - {name: rest, action: allow}\n", holdFrom)
	return b.String()
}

func devnetFund() devnet.FundOptions { return devnet.FundOptions{} }

// restartDaemon stops the daemon (gracefully unless killed already) and starts it again.
func restartDaemon(ctx context.Context, env *scenario.Env, killed bool) error {
	if !killed {
		if err := env.StopDaemon(); err != nil {
			return err
		}
	}
	return env.StartDaemon(ctx)
}

// dialConnected dials a client and connects it with a fresh bunker secret (perms "" = default).
func dialConnected(ctx context.Context, t *testing.T, env *scenario.Env, sk string, relays []string, perms string) *nip46e2e.Client {
	t.Helper()
	c, err := nip46e2e.Dial(ctx, sk, env.KeyA.NostrPubKey, relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	args := []string{"bunker-uri"}
	if perms != "" {
		args = append(args, "--perms", perms)
	}
	uri, err := env.Cosigner(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	_, q, _ := strings.Cut(strings.TrimSpace(uri), "secret=")
	secret, _, _ := strings.Cut(q, "&")
	r, err := c.Call(ctx, "connect", env.KeyA.NostrPubKey, secret)
	if err != nil || r.Result != "ack" {
		t.Fatalf("connect: %+v %v", r, err)
	}
	return c
}

// sendHeld sends a request the policy holds and has the approver approve it by its unsigned
// txid; both are sent again (new events, same request ids) until answered, since the daemon may
// be killed meanwhile. Before the daemon has held the request, approve answers that there is no
// such held request; it is asked again.
func sendHeld(ctx context.Context, t *testing.T, c, approver *nip46e2e.Client, id, psbtText string, txid chainhash.Hash) nip46e2e.Response {
	ch := c.Watch(id)
	for attempt := 0; ; attempt++ {
		ev, err := seal(c, id, "sign_psbt", psbtText)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, ev); err != nil && ctx.Err() != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		approver.Call(actx, "approve", txid.String(), "approve")
		cancel()
		deadline := time.After(15 * time.Second)
	wait:
		for {
			select {
			case r := <-ch:
				if r.Result == "auth_url" {
					continue
				}
				return r
			case <-deadline:
				t.Logf("held request %s not answered yet (attempt %d): sending it and the approval again", id, attempt+1)
				break wait
			case <-ctx.Done():
				t.Fatalf("held request %s never answered", id)
			}
		}
	}
}

// seal makes a NIP-46 request event with the given request id (a retry reuses the id).
func seal(c *nip46e2e.Client, id, method string, params ...string) (nostr.Event, error) {
	body, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return nostr.Event{}, err
	}
	return c.Seal(string(body), nostr.Tags{{"p", c.Signer}}, nostr.Now())
}

func newRequestID() string {
	var b [12]byte
	if _, err := cryptorand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// hasOurSignature reports whether result is the request's PSBT with at least one partial
// signature added (the co-signer's).
func hasOurSignature(t *testing.T, result, request string) bool {
	before, err := btcpsbt.NewFromRawBytes(strings.NewReader(request), true)
	if err != nil {
		t.Errorf("request psbt: %v", err)
		return false
	}
	after, err := btcpsbt.NewFromRawBytes(strings.NewReader(result), true)
	if err != nil {
		t.Errorf("answered psbt does not parse: %v", err)
		return false
	}
	if after.UnsignedTx.TxHash() != before.UnsignedTx.TxHash() {
		t.Errorf("the answer is another transaction: %s, asked %s", after.UnsignedTx.TxHash(), before.UnsignedTx.TxHash())
		return false
	}
	for _, in := range after.Inputs {
		if len(in.PartialSigs) == 0 && len(in.TaprootScriptSpendSig) == 0 {
			return false
		}
	}
	return true
}

// openDB opens the daemon's database read-side (WAL: readers do not block the daemon).
func openDB(ctx context.Context, t *testing.T, env *scenario.Env) *store.DB {
	t.Helper()
	db, err := store.Open(ctx, env.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// checkAnswered: every answered request has its row, in a final state, with the answer the
// client got — nothing acknowledged was lost across the kills.
func checkAnswered(ctx context.Context, t *testing.T, env *scenario.Env, records []sent) {
	t.Helper()
	db := openDB(ctx, t, env)
	defer db.Close()
	for _, s := range records {
		if !s.answered {
			continue
		}
		row, ok, err := db.SignRequestRow(ctx, clientPK(t, env, s), s.id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("request %s (%s) was answered %q but the store has no row", s.id, s.kind, short(s.answer.Error))
			continue
		}
		if s.signed && row.Result == "" {
			t.Errorf("request %s was signed but its row holds no result (state %s)", s.id, row.State)
		}
		if !s.signed && s.answer.Error != "" && row.Error != "" && !strings.HasPrefix(s.answer.Error, strings.SplitN(row.Error, ":", 2)[0]) {
			t.Errorf("request %s: the client got %q, the store says %q", s.id, short(s.answer.Error), short(row.Error))
		}
	}
}

// checkDecidedOnce: one final decision per request in the audit log, whatever the kills.
func checkDecidedOnce(ctx context.Context, t *testing.T, env *scenario.Env, records []sent) {
	t.Helper()
	db := openDB(ctx, t, env)
	defer db.Close()
	log, err := db.AuditLog(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	final := map[string]int{}
	signedRows := map[string]int{}
	for _, a := range log {
		if a.Method != "sign_psbt" || a.Decision == "held" {
			continue
		}
		final[a.Client+"/"+a.RequestID]++
		if a.Decision == "signed" {
			signedRows[a.Client+"/"+a.RequestID]++
		}
	}
	for _, s := range records {
		k := clientPK(t, env, s) + "/" + s.id
		if final[k] != 1 {
			t.Errorf("request %s (%s): %d final decisions in the audit log, want 1", s.id, s.kind, final[k])
		}
		if s.signed != (signedRows[k] == 1) {
			t.Errorf("request %s: the client got a signature: %v; the audit log's signed rows: %d", s.id, s.signed, signedRows[k])
		}
	}
}

// checkPolicy: every signature the clients received is inside the policy. The velocity check
// replays the signatures in the order the daemon gave them (its audit log) and computes the
// exposure after each one the way the policy defines it — per coin, the largest outflow among
// the outstanding signatures spending it (only one of them can confirm), or the outflow of the
// signed transaction that confirmed — taking every broadcast payment as confirmed from the
// moment it was signed. That is the least exposure the daemon could have known, so a signature
// that takes even this over the window's maximum is a breach.
func checkPolicy(ctx context.Context, t *testing.T, env *scenario.Env, records []sent) {
	t.Helper()
	signed := map[string]sent{}
	for _, s := range records {
		if !s.signed {
			continue
		}
		signed[clientPK(t, env, s)+"/"+s.id] = s
		switch {
		case s.kind == kindDenied || s.kind == kindOverCap:
			t.Errorf("request %s (%s) was signed", s.id, s.kind)
		case s.outflow > maxPerTx:
			t.Errorf("request %s signed with outflow %d > max_per_tx", s.id, s.outflow)
		}
	}
	db := openDB(ctx, t, env)
	defer db.Close()
	log, err := db.AuditLog(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	outstanding := map[wire.OutPoint]int64{}
	confirmed := map[wire.OutPoint]int64{}
	replayed := 0
	for i := len(log) - 1; i >= 0; i-- { // oldest first
		a := log[i]
		if a.Method != "sign_psbt" || a.Decision != "signed" {
			continue
		}
		s, ok := signed[a.Client+"/"+a.RequestID]
		if !ok {
			continue
		}
		replayed++
		if _, done := confirmed[s.coin]; !done {
			outstanding[s.coin] = max(outstanding[s.coin], s.outflow)
		}
		var exposure int64
		for op, v := range outstanding {
			if c, done := confirmed[op]; done {
				exposure += c
			} else {
				exposure += v
			}
		}
		if exposure > velocityMax {
			t.Errorf("request %s (%s, %d sat) signed: the exposure became at least %d sat, over the window's %d", s.id, s.kind, s.outflow, exposure, velocityMax)
		}
		if s.broadcast {
			confirmed[s.coin] = s.outflow
		}
	}
	if replayed != len(signed) {
		t.Errorf("%d signatures received, %d found signed in the audit log", len(signed), replayed)
	}
}

// checkExposure compares the ledger's spend exposure with one computed from btcd and the
// signatures the clients received: per coin, the confirmed spender's outflow if it is one of
// the signed transactions (confirmed: it counts at its confirmation time, inside the window);
// nothing if a transaction that is not one of them spent it in a block; otherwise the largest
// outflow among the signatures spending it (at most one of them can ever confirm).
func checkExposure(ctx context.Context, t *testing.T, env *scenario.Env, records []sent) {
	t.Helper()
	rpc := env.Net.RPC()
	byCoin := map[wire.OutPoint][]sent{}
	for _, s := range records {
		if s.signed {
			byCoin[s.coin] = append(byCoin[s.coin], s)
		}
	}
	var want int64
	for op, ss := range byCoin {
		var counted int64
		confirmedOurs := false
		for _, s := range ss {
			tx, err := rpc.GetRawTransactionVerbose(&s.txid)
			if err == nil && tx.Confirmations > 0 {
				counted, confirmedOurs = s.outflow, true
				break
			}
		}
		if !confirmedOurs {
			out, err := rpc.GetTxOut(&op.Hash, op.Index, false)
			if err != nil {
				t.Fatal(err)
			}
			if out != nil { // unspent in the chain: every signature on it is outstanding
				for _, s := range ss {
					counted = max(counted, s.outflow)
				}
			}
		}
		want += counted
	}
	var got int64
	var err error
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err = ledgerExposure(ctx, env)
		if err == nil && got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // the watcher is still catching up with the last block
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spend exposure: ledger %d sat, computed from btcd and the clients' signatures %d sat (%d coins signed for)", got, want, len(byCoin))
	if got != want {
		t.Errorf("the ledger's exposure %d sat differs from the independent sum %d sat", got, want)
	}
}

// snapshot copies the records under mu: the clients' goroutines write them.
func snapshot(mu *sync.Mutex, records *[]*sent) []sent {
	mu.Lock()
	defer mu.Unlock()
	out := make([]sent, len(*records))
	for i, r := range *records {
		out[i] = *r
	}
	return out
}

func clientPK(t *testing.T, env *scenario.Env, s sent) string {
	return clientPKs[s.client]
}

var clientPKs []string

func short(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// ledgerExposure is the daemon's spend exposure in satoshis as its ledger holds it, read the
// way an operator reads it.
func ledgerExposure(ctx context.Context, env *scenario.Env) (int64, error) {
	out, err := env.Cosigner(ctx, "exposure", "list", "--json")
	if err != nil {
		return 0, err
	}
	var list struct {
		Windows []struct {
			Window      string `json:"window"`
			ExposureSat int64  `json:"exposure_sat"`
		} `json:"windows"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return 0, fmt.Errorf("exposure list --json: %w: %s", err, short(out))
	}
	if len(list.Windows) != 1 {
		return 0, fmt.Errorf("exposure list: want the policy's one window, got %+v", list.Windows)
	}
	return list.Windows[0].ExposureSat, nil
}
