package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/psbt"
)

// electrumWallet is a 2-of-3 wallet view read from ElectrumX: it lists the wallet's unspent
// outputs (blockchain.scripthash.listunspent) on the first scripts of both branches, fetches
// previous transactions (blockchain.transaction.get) for non_witness_utxo, and serves as the
// psbt.ChainView that Analyze and SignInputs read.
type electrumWallet struct {
	c       *electrum.Client
	desc    *descriptor.Descriptor
	scripts map[string][2]uint32
	coins   map[wire.OutPoint]psbt.Coin
	tip     int32
}

func (w *electrumWallet) PrevTx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	var raw string
	if err := w.c.Call(ctx, "blockchain.transaction.get", []any{txid.String()}, &raw); err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(raw)
	if err != nil {
		return nil, err
	}
	tx := wire.NewMsgTx(2)
	return tx, tx.Deserialize(bytes.NewReader(b))
}

// refresh reads the tip and the unspent outputs of every watched script from the server.
func (w *electrumWallet) refresh(ctx context.Context) ([]psbt.UTXO, error) {
	var head struct {
		Height int32 `json:"height"`
	}
	if err := w.c.Call(ctx, "blockchain.headers.subscribe", nil, &head); err != nil {
		return nil, err
	}
	w.tip = head.Height
	w.coins = map[wire.OutPoint]psbt.Coin{}
	var out []psbt.UTXO
	for s, bi := range w.scripts {
		var unspent []struct {
			TxHash string `json:"tx_hash"`
			TxPos  uint32 `json:"tx_pos"`
			Height int32  `json:"height"`
			Value  int64  `json:"value"`
		}
		if err := w.c.Call(ctx, "blockchain.scripthash.listunspent", []any{chainwatch.ScriptHash([]byte(s))}, &unspent); err != nil {
			return nil, err
		}
		for _, u := range unspent {
			h, err := chainhash.NewHashFromStr(u.TxHash)
			if err != nil {
				return nil, err
			}
			op := wire.OutPoint{Hash: *h, Index: u.TxPos}
			c := psbt.Coin{Value: btcutil.Amount(u.Value), PkScript: []byte(s), Branch: bi[0], Index: bi[1], Height: u.Height}
			w.coins[op] = c
			out = append(out, psbt.UTXO{OutPoint: op, Coin: c})
		}
	}
	return out, nil
}

func (w *electrumWallet) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	c, ok := w.coins[op]
	return c, ok
}
func (w *electrumWallet) Lookup(s []byte) (uint32, uint32, bool) {
	bi, ok := w.scripts[string(s)]
	return bi[0], bi[1], ok
}
func (w *electrumWallet) TipHeight() int32 { return w.tip }
func (w *electrumWallet) Synced() bool     { return true }

// TestBuiltPSBTIsAcceptedByBtcd funds a 2-of-3 P2WSH wallet on the local test network, builds a
// payment with change and then two sweeps from the UTXOs ElectrumX reports, with previous
// transactions fetched from ElectrumX; each PSBT passes Analyze and is signed with key A; the
// payment is then signed with key B, finalized and broadcast by BDK, the sweeps signed with key
// C, finalized by btcd's psbt finalizer and sent to btcd; each is mined, and the wallet's UTXOs
// on the server are then exactly the coins not selected and the change.
func TestBuiltPSBTIsAcceptedByBtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Keys A and C are cosigner keys; key B is BDK's, so that an independent PSBT implementation
	// signs and finalizes what the builder wrote.
	f := newBuilderWallet(t, ctx, 0xb0, "cosigner-e2e-build", func(a, b, c string) string { return "wsh(sortedmulti(2," + a + "," + b + "," + c + "))" })
	n, params, keys, desc, bdkArgs, w := f.n, f.n.Params(), f.keys, f.desc, f.bdkArgs, f.w
	slot := func(k *keystore.Keys) int { return f.slot(t, k) }
	pk, _ := btcec.NewPrivateKey()
	dest, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), params)

	destScript, _ := txscript.PayToAddrScript(dest)
	// spend builds, checks, signs with A and C, finalizes and sends one transaction, mines it,
	// and checks on ElectrumX that it confirmed and what it left in the wallet: the coins not
	// selected and the change.
	spend := func(t *testing.T, finalizer string, mode psbt.SelectMode, amount, reserve btcutil.Amount, changeIndex uint32) {
		coins, sel, p, a := f.build(t, ctx, dest, mode, amount, reserve, changeIndex)
		if a.Outflow != sel.InputTotal-sel.Change {
			t.Fatalf("analysis %+v disagrees with selection %+v", a, sel)
		}
		if got, err := psbt.SignInputs(p, a, desc, slot(keys[0]), keys[0], w); err != nil || got != len(p.Inputs) {
			t.Fatalf("SignInputs A = %d, %v", got, err)
		}
		var txid *chainhash.Hash
		var vsize int64
		if finalizer == "bdk" {
			// BDK adds key B's signatures, then finalizes, extracts and broadcasts (through
			// ElectrumX to btcd).
			b64, err := psbt.Encode(p, psbt.Base64)
			if err != nil {
				t.Fatal(err)
			}
			var signed struct {
				PSBT string `json:"psbt"`
			}
			if err := runBDKWallet(ctx, &signed, append([]string{"sign", "--psbt", b64}, bdkArgs...)...); err != nil {
				t.Fatal(err)
			}
			var fin struct {
				Txid  string `json:"txid"`
				VSize int64  `json:"vsize"`
			}
			if err := runBDKWallet(ctx, &fin, append([]string{"finalize", "--psbt", signed.PSBT, "--electrum", n.ElectrumURL()}, bdkArgs...)...); err != nil {
				t.Fatalf("BDK could not finalize and broadcast the built PSBT: %v", err)
			}
			if txid, err = chainhash.NewHashFromStr(fin.Txid); err != nil {
				t.Fatal(err)
			}
			vsize = fin.VSize
		} else {
			// Key C signs here too; btcd's psbt Finalizer and Extractor finish, btcd takes it.
			if got, err := psbt.SignInputs(p, a, desc, slot(keys[1]), keys[1], w); err != nil || got != len(p.Inputs) {
				t.Fatalf("SignInputs C = %d, %v", got, err)
			}
			if err := btcpsbt.MaybeFinalizeAll(p); err != nil {
				t.Fatal(err)
			}
			final, err := btcpsbt.Extract(p)
			if err != nil {
				t.Fatal(err)
			}
			vsize = (int64(final.SerializeSizeStripped())*3 + int64(final.SerializeSize()) + 3) / 4
			if txid, err = n.RPC().SendRawTransaction(final, false); err != nil {
				t.Fatalf("btcd refused the built transaction: %v", err)
			}
		}
		if txid.String() != p.UnsignedTx.TxHash().String() {
			t.Fatalf("broadcast %s, built %s", txid, p.UnsignedTx.TxHash())
		}
		if vsize > sel.VSize {
			t.Fatalf("finalized vsize %d above the estimate %d", vsize, sel.VSize)
		}
		if _, err := n.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s, %d of %d coins in, %s paid, change %s, fee %s for %d vB (estimate %d vB), locktime %d at tip %d, finalized by %s",
			txid, sel.Algorithm, len(sel.Inputs), len(coins), sel.Amount, sel.Change, sel.Fee, vsize, sel.VSize, p.UnsignedTx.LockTime, w.tip, finalizer)
		left, change := f.afterSpend(t, ctx, sel, *txid, destScript, changeIndex)
		want := len(coins) - len(sel.Inputs)
		if sel.Change > 0 {
			want++
		}
		if change != sel.Change || len(left) != want {
			t.Fatalf("after %s: %d wallet UTXOs with change %s; want %d and %s", txid, len(left), change, want, sel.Change)
		}
	}
	t.Run("payment with change, co-signed and finalized by BDK", func(t *testing.T) {
		// 500,000 sat: no two coins match it exactly, so a change output is made, and one or
		// two coins stay unspent.
		spend(t, "bdk", psbt.SelectTarget, 500_000, 0, 0)
	})
	t.Run("sweep above a reserve", func(t *testing.T) {
		spend(t, "btcd", psbt.SelectSweep, 0, 100_000, 1)
	})
	t.Run("sweep everything", func(t *testing.T) {
		spend(t, "btcd", psbt.SelectSweep, 0, 0, 2)
	})
}

// runBDKWallet runs e2e/clients/bdkwallet.py (bdkpython in the tools' venv) and decodes its
// one JSON answer into out.
func runBDKWallet(ctx context.Context, out any, args ...string) error {
	root, err := devnet.RepoRoot()
	if err != nil {
		return err
	}
	tools, err := devnet.ToolsDir()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "venv", "bin", "python"), append([]string{filepath.Join(root, "e2e", "clients", "bdkwallet.py")}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bdkwallet.py %s: %v: %s", args[0], err, stderr.String())
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

// confirmedOn tells whether the server lists txid in script's history at a height.
func confirmedOn(t *testing.T, ctx context.Context, c *electrum.Client, script []byte, txid chainhash.Hash) bool {
	t.Helper()
	var hist []struct {
		TxHash string `json:"tx_hash"`
		Height int32  `json:"height"`
	}
	if err := c.Call(ctx, "blockchain.scripthash.get_history", []any{chainwatch.ScriptHash(script)}, &hist); err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.TxHash == txid.String() && h.Height > 0 {
			return true
		}
	}
	return false
}

func allConfirmed(u []psbt.UTXO) bool {
	for _, c := range u {
		if c.Height <= 0 {
			return false
		}
	}
	return true
}

// waitUTXOs polls the server until ok holds for the wallet's UTXOs (ElectrumX learns of blocks
// by polling btcd); the test's context bounds the wait.
func waitUTXOs(t *testing.T, ctx context.Context, w *electrumWallet, ok func([]psbt.UTXO) bool) []psbt.UTXO {
	t.Helper()
	for {
		u, err := w.refresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok(u) {
			return u
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the wallet's UTXOs on ElectrumX: %v (last: %d UTXOs)", ctx.Err(), len(u))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// builderWallet is a 2-of-3 wallet on a fresh local test network (no relays) for the builder
// tests: keys A and C are cosigner keys from fixed test seeds (the wallet exists only on the
// local regtest chain), key B is BDK's; its first three receive addresses hold 300,000, 450,000
// and 1,200,000 sat, confirmed; w reads it from ElectrumX.
type builderWallet struct {
	n       *devnet.Network
	keys    [2]*keystore.Keys // A and C
	desc    *descriptor.Descriptor
	bdkArgs []string // the same wallet with key B private, for bdkwallet.py
	c       *electrum.Client
	w       *electrumWallet
}

// newBuilderWallet makes the wallet shape(A, B, C) (each key expression followed by
// /<0;1>/*), A and C from seeds seed and seed+1; client names the Electrum connection.
func newBuilderWallet(t *testing.T, ctx context.Context, seed byte, client string, shape func(a, b, c string) string) *builderWallet {
	t.Helper()
	n, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), RelayPorts: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	params := n.Params()
	f := &builderWallet{n: n}
	for i := range f.keys {
		f.keys[i], err = keystore.NewKeys(bytes.Repeat([]byte{seed + byte(i)}, 32), fmt.Sprintf("%064x", int(seed)+i), params)
		if err != nil {
			t.Fatal(err)
		}
	}
	var bdkKey struct {
		XprvKey string `json:"xprv_key"`
		XpubKey string `json:"xpub_key"`
	}
	if err := runBDKWallet(ctx, &bdkKey, "keys", "--network", "regtest"); err != nil {
		t.Fatal(err)
	}
	const mp = "/<0;1>/*"
	body := func(b string) string {
		return shape(f.keys[0].Public.KeyOrigin()+mp, b+mp, f.keys[1].Public.KeyOrigin()+mp)
	}
	if f.desc, err = descriptor.Parse(body(bdkKey.XpubKey), params); err != nil {
		t.Fatal(err)
	}
	f.bdkArgs = []string{"--descriptor", body(bdkKey.XprvKey), "--network", "regtest"}
	if f.c, err = electrum.Dial(ctx, n.ElectrumURL(), electrum.Options{ClientName: client, PingInterval: -1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.c.Close() })
	f.w = &electrumWallet{c: f.c, desc: f.desc, scripts: map[string][2]uint32{}}
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 5; i++ {
			s, err := f.desc.PkScript(b, i)
			if err != nil {
				t.Fatal(err)
			}
			f.w.scripts[string(s)] = [2]uint32{b, i}
		}
	}
	for i, v := range []btcutil.Amount{300_000, 450_000, 1_200_000} {
		d, err := f.desc.Derive(0, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Fund(ctx, d.Address, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return f
}

// slot is k's position among the descriptor's keys.
func (f *builderWallet) slot(t *testing.T, k *keystore.Keys) int {
	t.Helper()
	for i, dk := range f.desc.Keys() {
		if dk.XPub.String() == k.Public.AccountXPub {
			return i
		}
	}
	t.Fatal("key not in descriptor")
	return -1
}

// build waits for the wallet's coins to be confirmed, selects (mode, amount to dest, reserve)
// at 2.5 sat/vB, builds with change at changeIndex, and checks that the analysis agrees with
// the selection on fee and change. It returns the coins, the selection, the PSBT and its analysis.
func (f *builderWallet) build(t *testing.T, ctx context.Context, dest btcutil.Address, mode psbt.SelectMode, amount, reserve btcutil.Amount, changeIndex uint32) ([]psbt.UTXO, psbt.Selection, *btcpsbt.Packet, *psbt.Analysis) {
	t.Helper()
	coins := waitUTXOs(t, ctx, f.w, func(u []psbt.UTXO) bool { return len(u) > 0 && allConfirmed(u) })
	pays := []psbt.Payment{{Address: dest, Amount: amount}}
	sp, err := psbt.NewSelectParams(f.desc, pays)
	if err != nil {
		t.Fatal(err)
	}
	sp.Mode, sp.Reserve = mode, reserve
	sel, err := psbt.Select(coins, amount, 2.5, sp)
	if err != nil {
		t.Fatal(err)
	}
	p, err := psbt.Build(ctx, f.desc, sel, pays, psbt.BuildOptions{ChangeIndex: changeIndex, TipHeight: f.w.tip}, f.w)
	if err != nil {
		t.Fatal(err)
	}
	a, err := psbt.Analyze(p, f.desc, f.w)
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	if a.Fee != sel.Fee || a.ChangeTotal != sel.Change {
		t.Fatalf("analysis %+v disagrees with selection %+v", a, sel)
	}
	return coins, sel, p, a
}

// afterSpend waits until ElectrumX shows txid (which spent sel) confirmed on destScript and none
// of sel's coins left, checks that its change sits at 1/changeIndex, and returns the wallet's
// coins and the change they hold.
func (f *builderWallet) afterSpend(t *testing.T, ctx context.Context, sel psbt.Selection, txid chainhash.Hash, destScript []byte, changeIndex uint32) ([]psbt.UTXO, btcutil.Amount) {
	t.Helper()
	spent := map[wire.OutPoint]bool{}
	for _, in := range sel.Inputs {
		spent[in.OutPoint] = true
	}
	left := waitUTXOs(t, ctx, f.w, func(u []psbt.UTXO) bool {
		for _, c := range u {
			if spent[c.OutPoint] || (c.OutPoint.Hash == txid && c.Height <= 0) {
				return false
			}
		}
		return confirmedOn(t, ctx, f.c, destScript, txid)
	})
	var change btcutil.Amount
	for _, c := range left {
		if c.OutPoint.Hash == txid {
			change += c.Value
			if c.Branch != 1 || c.Index != changeIndex {
				t.Fatalf("change at %d/%d, want 1/%d", c.Branch, c.Index, changeIndex)
			}
		}
	}
	return left, change
}
