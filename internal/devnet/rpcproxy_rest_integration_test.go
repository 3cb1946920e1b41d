package devnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// TestRESTAgainstBtcd reads the proxy's REST paths as electrs does, against the real btcd: the
// hash by height, headers that link, a block whose hash and transactions match btcd's, the
// outputs its transactions spend (checked against btcd's previous transactions), block parts,
// and, after invalidateblock, an empty headers answer for the stale block while its bytes are
// still served (electrs reads them to undo it).
func TestRESTAgainstBtcd(t *testing.T) {
	n := startNetwork(t, Config{RelayPorts: []int{}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	get := func(path string) ([]byte, int) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.proxyPort, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && resp.ContentLength != int64(len(body)) {
			t.Fatalf("%s: Content-Length %d for %d bytes", path, resp.ContentLength, len(body))
		}
		return body, resp.StatusCode
	}

	// A block with a payment (Fund spends a mature coinbase).
	priv, _ := btcec.NewPrivateKey()
	addr, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	pk, _ := txscript.PayToAddrScript(addr)
	if _, err := n.Fund(ctx, addr, 70_000); err != nil {
		t.Fatal(err)
	}
	hashes, err := n.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := hashes[0]
	_, height, _ := n.RPC().GetBestBlock()

	body, status := get(fmt.Sprintf("/rest/blockhashbyheight/%d.bin", height))
	if status != 200 || !bytes.Equal(body, h[:]) {
		t.Fatalf("blockhashbyheight: %d %x, want %x", status, body, h[:])
	}
	prev, _ := n.RPC().GetBlockHash(int64(height) - 2)
	body, _ = get("/rest/headers/1001/" + prev.String() + ".bin")
	if len(body) != 3*80 {
		t.Fatalf("headers from tip-2: %d bytes, want 3 headers", len(body))
	}
	var last wire.BlockHeader
	if err := last.Deserialize(bytes.NewReader(body[160:])); err != nil || last.BlockHash() != h {
		t.Fatalf("third header is %s, want the tip %s", last.BlockHash(), h)
	}

	raw, status := get("/rest/block/" + h.String() + ".bin")
	var blk wire.MsgBlock
	if status != 200 || blk.Deserialize(bytes.NewReader(raw)) != nil || blk.BlockHash() != h || len(blk.Transactions) < 2 {
		t.Fatalf("block: status %d, %d bytes", status, len(raw))
	}
	spent, status := get("/rest/spenttxouts/" + h.String() + ".bin")
	if status != 200 {
		t.Fatalf("spenttxouts: %d %s", status, spent)
	}
	r := bytes.NewReader(spent)
	ntx, _ := wire.ReadVarInt(r, 0)
	if int(ntx) != len(blk.Transactions) {
		t.Fatalf("spenttxouts lists %d transactions, the block has %d", ntx, len(blk.Transactions))
	}
	for i, tx := range blk.Transactions {
		nin, _ := wire.ReadVarInt(r, 0)
		if i == 0 {
			if nin != 0 {
				t.Fatalf("coinbase spends %d outputs", nin)
			}
			continue
		}
		if int(nin) != len(tx.TxIn) {
			t.Fatalf("tx %d: %d spent outputs for %d inputs", i, nin, len(tx.TxIn))
		}
		for _, in := range tx.TxIn {
			var out wire.TxOut
			if err := wire.ReadTxOut(r, 0, 0, &out); err != nil {
				t.Fatal(err)
			}
			ptx, err := n.RPC().GetRawTransaction(&in.PreviousOutPoint.Hash)
			if err != nil {
				t.Fatal(err)
			}
			want := ptx.MsgTx().TxOut[in.PreviousOutPoint.Index]
			if out.Value != want.Value || !bytes.Equal(out.PkScript, want.PkScript) {
				t.Fatalf("spent output of %v = %d %x, btcd says %d %x", in.PreviousOutPoint, out.Value, out.PkScript, want.Value, want.PkScript)
			}
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the spent outputs", r.Len())
	}
	part, _ := get(fmt.Sprintf("/rest/blockpart/%s.bin?offset=%d&size=%d", h, 80, len(raw)-80))
	if !bytes.Equal(part, raw[80:]) {
		t.Fatal("blockpart differs from the block's bytes")
	}
	paid := false
	for _, tx := range blk.Transactions {
		for _, o := range tx.TxOut {
			paid = paid || bytes.Equal(o.PkScript, pk)
		}
	}
	if !paid {
		t.Fatal("the block does not hold the payment")
	}

	// The tip goes stale: no headers from it, its bytes and spent outputs still served.
	if err := n.RPC().InvalidateBlock(&h); err != nil {
		t.Fatal(err)
	}
	if body, status := get("/rest/headers/1001/" + h.String() + ".bin"); status != 200 || len(body) != 0 {
		t.Fatalf("headers from a stale block: %d, %d bytes; want 200 and none", status, len(body))
	}
	if body, status := get("/rest/block/" + h.String() + ".bin"); status != 200 || !bytes.Equal(body, raw) {
		t.Fatalf("stale block: %d, %d bytes", status, len(body))
	}
	if body, status := get("/rest/spenttxouts/" + h.String() + ".bin"); status != 200 || !bytes.Equal(body, spent) {
		t.Fatalf("stale block's spent outputs: %d %s", status, body)
	}
	if _, status := get("/rest/block/" + (chainhash.Hash{1}).String() + ".bin"); status != http.StatusNotFound {
		t.Fatalf("unknown block: %d, want 404", status)
	}
}
