package devnet

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// fakeChain answers the btcd calls the REST bridge makes from a small chain of
// real blocks: block 1 pays two outputs in its coinbase, block 2 spends both
// (and an output of a transaction in the same block), block 3 is empty. A
// stale block (off the main chain) is known to getblock only, as in btcd.
type fakeChain struct {
	blocks []*wire.MsgBlock // by height; [0] is a stand-in genesis
	stale  *wire.MsgBlock
	txs    map[chainhash.Hash]*wire.MsgTx
	calls  map[string]int
}

func newFakeChain(t *testing.T) *fakeChain {
	t.Helper()
	c := &fakeChain{txs: map[chainhash.Hash]*wire.MsgTx{}, calls: map[string]int{}}
	coinbase := func(tag byte, outs ...*wire.TxOut) *wire.MsgTx {
		tx := wire.NewMsgTx(2)
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 0xffffffff}, SignatureScript: []byte{tag, 0x51}})
		for _, o := range outs {
			tx.AddTxOut(o)
		}
		return tx
	}
	addBlock := func(txs ...*wire.MsgTx) *wire.MsgBlock {
		var prev chainhash.Hash
		if len(c.blocks) > 0 {
			prev = c.blocks[len(c.blocks)-1].BlockHash()
		}
		b := &wire.MsgBlock{Header: wire.BlockHeader{Version: 4, PrevBlock: prev, Bits: 0x207fffff, Nonce: uint32(len(c.blocks))}}
		for _, tx := range txs {
			b.AddTransaction(tx)
			c.txs[tx.TxHash()] = tx
		}
		return b
	}
	c.blocks = append(c.blocks, addBlock(coinbase(0, wire.NewTxOut(50e8, []byte{0x51}))))
	cb1 := coinbase(1, wire.NewTxOut(20e8, []byte{0x00, 0x14, 1, 2, 3}), wire.NewTxOut(30e8, []byte{0x51, 0x20, 9}))
	c.blocks = append(c.blocks, addBlock(cb1))
	spend := wire.NewMsgTx(2)
	spend.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: cb1.TxHash(), Index: 1}})
	spend.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: cb1.TxHash(), Index: 0}})
	spend.AddTxOut(wire.NewTxOut(49e8, []byte{0x6a}))
	spend.AddTxOut(wire.NewTxOut(7, []byte{0x52}))
	child := wire.NewMsgTx(2)
	child.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: spend.TxHash(), Index: 1}})
	child.AddTxOut(wire.NewTxOut(6, []byte{0x53}))
	c.blocks = append(c.blocks, addBlock(coinbase(2), spend, child))
	c.blocks = append(c.blocks, addBlock(coinbase(3)))
	c.stale = &wire.MsgBlock{Header: wire.BlockHeader{Version: 4, PrevBlock: c.blocks[2].BlockHash(), Bits: 0x207fffff, Nonce: 99}}
	c.stale.AddTransaction(coinbase(9))
	return c
}

func hexOf(t interface{ Serialize(io.Writer) error }) string {
	var b bytes.Buffer
	_ = t.Serialize(&b)
	return hex.EncodeToString(b.Bytes())
}

func (c *fakeChain) find(s string) (*wire.MsgBlock, int) {
	for i, b := range c.blocks {
		if b.BlockHash().String() == s {
			return b, i
		}
	}
	if c.stale.BlockHash().String() == s {
		return c.stale, -1
	}
	return nil, -2
}

func (c *fakeChain) call(_ context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
	var out []rpcResponse
	for _, r := range reqs {
		c.calls[r.Method]++
		resp := rpcResponse{ID: r.ID, Result: json.RawMessage("null"), Error: json.RawMessage("null")}
		res := func(v any) { resp.Result, _ = json.Marshal(v) }
		fail := func(code int, msg string) { resp.Error, _ = json.Marshal(rpcError{Code: code, Message: msg}) }
		var s string
		if len(r.Params) > 0 {
			_ = json.Unmarshal(r.Params[0], &s)
		}
		switch r.Method {
		case "getblockcount":
			res(len(c.blocks) - 1)
		case "getblockhash":
			h, _ := strconv.Atoi(string(r.Params[0]))
			if h < 0 || h >= len(c.blocks) {
				fail(-1, "Block number out of range")
			} else {
				res(c.blocks[h].BlockHash().String())
			}
		case "getblockheader":
			b, i := c.find(s)
			switch {
			case i < 0: // btcd: unknown, or not in the main chain
				fail(-5, "Block not found")
			case string(r.Params[1]) == "false":
				res(hexOf(&b.Header))
			default:
				res(map[string]any{"hash": s, "height": i})
			}
		case "getblock":
			if b, i := c.find(s); i >= -1 {
				res(hexOf(b))
			} else {
				fail(-5, "Block not found")
			}
		case "getrawtransaction":
			h, _ := chainhash.NewHashFromStr(s)
			if tx, ok := c.txs[*h]; ok {
				res(hexOf(tx))
			} else {
				fail(-5, "No information available about transaction")
			}
		default:
			fail(-32601, "Method not found")
		}
		out = append(out, resp)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 { // any order
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (c *fakeChain) rest(t *testing.T, path string) ([]byte, int) {
	t.Helper()
	r := restRPC{call: c.call, cache: &blockCache{}}
	u, q, _ := strings.Cut(path, "?")
	vals := map[string]string{}
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	body, err := r.handleREST(context.Background(), u, func(k string) string { return vals[k] })
	if err != nil {
		var se *errRESTStatus
		if !errors.As(err, &se) {
			t.Fatalf("%s: error without a status: %v", path, err)
		}
		return nil, se.status
	}
	return body, http.StatusOK
}

func TestRESTBlockHashByHeight(t *testing.T) {
	c := newFakeChain(t)
	body, status := c.rest(t, "/rest/blockhashbyheight/2.bin")
	want := c.blocks[2].BlockHash()
	if status != 200 || !bytes.Equal(body, want[:]) {
		t.Fatalf("got %d %x, want the hash in wire order %x", status, body, want[:])
	}
	if _, status := c.rest(t, "/rest/blockhashbyheight/4.bin"); status != http.StatusNotFound {
		t.Errorf("height above the tip: status %d, want 404", status)
	}
	if _, status := c.rest(t, "/rest/blockhashbyheight/-1.bin"); status != http.StatusBadRequest {
		t.Errorf("negative height: status %d, want 400", status)
	}
	if _, status := c.rest(t, "/rest/blockhashbyheight/2.json"); status != http.StatusNotFound {
		t.Errorf(".json: status %d, want 404 (only .bin is served)", status)
	}
}

func TestRESTHeaders(t *testing.T) {
	c := newFakeChain(t)
	headersFrom := func(from, n int) []byte {
		var b bytes.Buffer
		for _, blk := range c.blocks[from : from+n] {
			_ = blk.Header.Serialize(&b)
		}
		return b.Bytes()
	}
	tests := []struct {
		name, path string
		want       []byte
	}{
		{"count within the chain", "/rest/headers/2/" + c.blocks[1].BlockHash().String() + ".bin", headersFrom(1, 2)},
		{"count past the tip stops at the tip (electrs asks limit+1)", "/rest/headers/1001/" + c.blocks[2].BlockHash().String() + ".bin", headersFrom(2, 2)},
		{"query form", "/rest/headers/" + c.blocks[0].BlockHash().String() + ".bin?count=4", headersFrom(0, 4)},
		{"off the main chain: empty body, as Core (electrs rolls its tip back)", "/rest/headers/1001/" + c.stale.BlockHash().String() + ".bin", nil},
		{"unknown hash: empty body", "/rest/headers/5/" + strings.Repeat("ab", 32) + ".bin", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, status := c.rest(t, tt.path)
			if status != 200 || !bytes.Equal(body, tt.want) {
				t.Errorf("got %d, %d bytes; want 200, %d bytes", status, len(body), len(tt.want))
			}
		})
	}
	if _, status := c.rest(t, "/rest/headers/2001/"+c.blocks[0].BlockHash().String()+".bin"); status != http.StatusBadRequest {
		t.Errorf("count 2001: status %d, want 400", status)
	}
}

func TestRESTBlockAndBlockPart(t *testing.T) {
	c := newFakeChain(t)
	var want bytes.Buffer
	_ = c.blocks[2].Serialize(&want)
	h := c.blocks[2].BlockHash().String()
	body, status := c.rest(t, "/rest/block/"+h+".bin")
	if status != 200 || !bytes.Equal(body, want.Bytes()) {
		t.Fatalf("block: %d, %d bytes, want %d", status, len(body), want.Len())
	}
	part, status := c.rest(t, "/rest/blockpart/"+h+".bin?offset=80&size=20")
	if status != 200 || !bytes.Equal(part, want.Bytes()[80:100]) {
		t.Errorf("blockpart: %d %x", status, part)
	}
	if _, status := c.rest(t, "/rest/blockpart/"+h+".bin?offset=0&size="+strconv.Itoa(want.Len()+1)); status != http.StatusBadRequest {
		t.Errorf("blockpart past the end: status %d, want 400", status)
	}
	if _, status := c.rest(t, "/rest/block/"+strings.Repeat("cd", 32)+".bin"); status != http.StatusNotFound {
		t.Errorf("unknown block: status %d, want 404", status)
	}
	if _, status := c.rest(t, "/rest/block/"+c.stale.BlockHash().String()+".bin"); status != 200 {
		t.Errorf("stale block: status %d, want 200 (electrs reads it to undo it)", status)
	}
	if _, status := c.rest(t, "/rest/block/zz.bin"); status != http.StatusBadRequest {
		t.Errorf("bad hash: status %d, want 400", status)
	}
	// The block is fetched from btcd once and then served from the cache.
	c.calls = map[string]int{}
	r := restRPC{call: c.call, cache: &blockCache{}}
	for range 3 {
		if _, err := r.handleREST(context.Background(), "/rest/blockpart/"+h+".bin", func(k string) string { return map[string]string{"offset": "0", "size": "80"}[k] }); err != nil {
			t.Fatal(err)
		}
	}
	if c.calls["getblock"] != 1 {
		t.Errorf("getblock called %d times for 3 blockparts, want 1", c.calls["getblock"])
	}
}

func TestRESTSpentTxOuts(t *testing.T) {
	c := newFakeChain(t)
	// Expected, written out by hand: 3 transactions; the coinbase spends
	// nothing; spend spends cb1:1 then cb1:0; child spends spend:1 (same block).
	cb1 := c.blocks[1].Transactions[0]
	spend := c.blocks[2].Transactions[1]
	var want bytes.Buffer
	want.WriteByte(3)
	want.WriteByte(0)
	want.WriteByte(2)
	_ = wire.WriteTxOut(&want, 0, 0, cb1.TxOut[1])
	_ = wire.WriteTxOut(&want, 0, 0, cb1.TxOut[0])
	want.WriteByte(1)
	_ = wire.WriteTxOut(&want, 0, 0, spend.TxOut[1])

	body, status := c.rest(t, "/rest/spenttxouts/"+c.blocks[2].BlockHash().String()+".bin")
	if status != 200 || !bytes.Equal(body, want.Bytes()) {
		t.Fatalf("got %d %x\nwant %x", status, body, want.Bytes())
	}
	if c.calls["getrawtransaction"] != 1 {
		t.Errorf("getrawtransaction called %d times, want 1 (once per distinct previous transaction outside the block)", c.calls["getrawtransaction"])
	}
	body, _ = c.rest(t, "/rest/spenttxouts/"+c.blocks[3].BlockHash().String()+".bin")
	if !bytes.Equal(body, []byte{1, 0}) {
		t.Errorf("coinbase-only block: %x, want 0100", body)
	}

	// A previous transaction btcd no longer finds (a stale block's, out of the txindex): an
	// error, never a partial answer; but an answer given before is kept and served again.
	r := restRPC{call: c.call, cache: &blockCache{}}
	path := "/rest/spenttxouts/" + c.blocks[2].BlockHash().String() + ".bin"
	before, err := r.handleREST(context.Background(), path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	delete(c.txs, cb1.TxHash())
	again, err := r.handleREST(context.Background(), path, func(string) string { return "" })
	if err != nil || !bytes.Equal(again, before) {
		t.Errorf("spent outputs asked again after btcd lost a previous transaction: %v", err)
	}
	if _, status := c.rest(t, path); status != http.StatusInternalServerError {
		t.Errorf("missing previous transaction, nothing cached: status %d, want 500", status)
	}
}

func TestGetMempoolEntryFromRawMempool(t *testing.T) {
	calls := 0
	call := func(_ context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
		var out []rpcResponse
		for _, r := range reqs {
			if r.Method != "getrawmempool" || string(r.Params[0]) != "true" {
				t.Errorf("btcd was sent %s %s", r.Method, r.Params)
			}
			calls++
			out = append(out, rpcResponse{ID: r.ID, Error: json.RawMessage("null"), Result: json.RawMessage(`{
				"` + strings.Repeat("aa", 32) + `": {"size":200,"vsize":141,"weight":561,"fee":0.00000705,"time":1700000000,"height":450,"startingpriority":0,"currentpriority":0,"depends":[]},
				"` + strings.Repeat("bb", 32) + `": {"size":300,"vsize":222,"weight":888,"fee":0.000012345678,"time":1700000001,"height":450,"depends":["` + strings.Repeat("aa", 32) + `"]}}`)})
		}
		return out, nil
	}
	body := `[{"jsonrpc":"2.0","method":"getmempoolentry","params":["` + strings.Repeat("aa", 32) + `"],"id":1},
		{"jsonrpc":"2.0","method":"getmempoolentry","params":["` + strings.Repeat("bb", 32) + `"],"id":2},
		{"jsonrpc":"2.0","method":"getmempoolentry","params":["` + strings.Repeat("cc", 32) + `"],"id":3}]`
	reply, err := handleBody(context.Background(), []byte(body), call)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("getrawmempool true asked %d times for one batch, want 1", calls)
	}
	var got []struct {
		Result *struct {
			Vsize int64 `json:"vsize"`
			Fees  struct {
				Base float64 `json:"base"`
			} `json:"fees"`
			Depends []string `json:"depends"`
		} `json:"result"`
		Error *rpcError `json:"error"`
	}
	if err := json.Unmarshal(reply, &got); err != nil || len(got) != 3 {
		t.Fatalf("reply %s: %v", reply, err)
	}
	if r := got[0].Result; r == nil || r.Vsize != 141 || r.Fees.Base != 0.00000705 || r.Depends == nil || len(r.Depends) != 0 {
		t.Errorf("entry aa = %+v", got[0])
	}
	if r := got[1].Result; r == nil || r.Fees.Base != 0.00001235 || len(r.Depends) != 1 {
		t.Errorf("entry bb = %+v (fee must be rounded to 8 decimals)", got[1])
	}
	if got[2].Error == nil || got[2].Error.Code != -5 {
		t.Errorf("entry not in the mempool = %+v, want error -5", got[2])
	}
}

func TestGetBlockchainInfoAddsIBD(t *testing.T) {
	call := func(_ context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
		return []rpcResponse{{ID: reqs[0].ID, Error: json.RawMessage("null"), Result: json.RawMessage(`{"chain":"regtest","blocks":450,"headers":450,"bestblockhash":"00","pruned":false}`)}}, nil
	}
	reply, err := handleBody(context.Background(), []byte(`{"method":"getblockchaininfo","params":[],"id":1}`), call)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal(reply, &got); err != nil {
		t.Fatal(err)
	}
	if ibd, ok := got.Result["initialblockdownload"]; !ok || ibd != false || got.Result["blocks"] != 450.0 || got.Result["pruned"] != false {
		t.Errorf("getblockchaininfo = %v", got.Result)
	}
}

func TestEstimateSmartFeeRounded(t *testing.T) {
	call := func(_ context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
		return []rpcResponse{{ID: reqs[0].ID, Error: json.RawMessage("null"), Result: json.RawMessage(`0.000123456789`)}}, nil
	}
	// electrs sends a null estimate mode.
	reply, err := handleBody(context.Background(), []byte(`{"jsonrpc":"2.0","method":"estimatesmartfee","params":[2,null],"id":1}`), call)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reply), `"feerate":0.00012346`) {
		t.Errorf("reply %s: want the feerate rounded to 8 decimals", reply)
	}
}

// TestProxyContentLength: every reply, large JSON-RPC answers and REST bodies
// included, carries a Content-Length and is not chunked (electrs's HTTP
// clients read neither form without it).
func TestProxyContentLength(t *testing.T) {
	c := newFakeChain(t)
	big := strings.Repeat("ab", 8000)
	btcd := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req rpcRequest
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			var reqs []rpcRequest
			_ = json.Unmarshal(body, &reqs)
			rs, _ := c.call(r.Context(), reqs)
			b, _ := json.Marshal(rs)
			w.Write(b)
			return
		}
		_ = json.Unmarshal(body, &req)
		if req.Method == "getrawmempool" {
			b, _ := json.Marshal(rpcResponse{ID: req.ID, Result: json.RawMessage(`"` + big + `"`), Error: json.RawMessage("null")})
			w.Write(b)
			return
		}
		rs, _ := c.call(r.Context(), []rpcRequest{req})
		b, _ := json.Marshal(rs[0])
		w.Write(b)
	})}
	btcdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go btcd.Serve(btcdLn)
	defer btcd.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startRPCProxy(ln, "http://"+btcdLn.Addr().String()+"/", "u", "p", slog.New(slog.DiscardHandler))
	defer p.close()
	base := "http://" + ln.Addr().String()

	check := func(resp *http.Response, err error, minLen int) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || resp.ContentLength != int64(len(body)) || len(body) < minLen {
			t.Errorf("status %d, transfer-encoding %v, content-length %d, body %d bytes (want ≥ %d)", resp.StatusCode, resp.TransferEncoding, resp.ContentLength, len(body), minLen)
		}
	}
	resp, err := http.Post(base+"/", "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"getrawmempool","params":[],"id":1}`))
	check(resp, err, 16000)
	var blk bytes.Buffer
	_ = c.blocks[2].Serialize(&blk)
	resp, err = http.Get(base + "/rest/block/" + c.blocks[2].BlockHash().String() + ".bin")
	check(resp, err, blk.Len())
	resp, err = http.Get(base + "/rest/block/" + strings.Repeat("cd", 32) + ".bin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.ContentLength <= 0 {
		t.Errorf("unknown block over HTTP: status %d, content-length %d", resp.StatusCode, resp.ContentLength)
	}
}

// TestBlockCacheKeepsTheRecent: past its size the cache forgets the oldest entries only.
func TestBlockCacheKeepsTheRecent(t *testing.T) {
	var c blockCache
	key := func(i int) chainhash.Hash { return chainhash.DoubleHashH([]byte(strconv.Itoa(i))) }
	n := 3*restBlockCacheSize + 7
	for i := range n {
		c.put(key(i), []byte{byte(i)})
	}
	for i := n - restBlockCacheSize; i < n; i++ {
		if b, ok := c.get(key(i)); !ok || b[0] != byte(i) {
			t.Fatalf("entry %d of the last %d forgotten", i, restBlockCacheSize)
		}
	}
	if _, ok := c.get(key(0)); ok {
		t.Error("the cache is not bounded: entry 0 still there")
	}
}
