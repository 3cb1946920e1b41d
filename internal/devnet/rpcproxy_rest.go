package devnet

// rpcproxy_rest.go — Bitcoin Core's binary REST interface, answered by the
// compatibility proxy from btcd's JSON-RPC, for electrs 0.12 (its indexer,
// bindex, reads every block this way and no longer speaks P2P).
//
// Paths (GET, no authentication, as Core serves them with -rest; only the .bin
// format). Hashes in paths are in display (reversed) hex; bodies are in wire
// byte order:
//
//   - /rest/blockhashbyheight/H.bin → 32 bytes ← getblockhash H. A height above
//     the tip: 404.
//   - /rest/headers/N/HASH.bin (and /rest/headers/HASH.bin?count=N) → up to N
//     80-byte headers of the main chain from HASH on ← getblockheader HASH true
//     (its height), getblockcount, getblockhash for each height, getblockheader
//     hash false. A HASH that is unknown or off the main chain gives an empty
//     body, as Core does: electrs reads that as "my tip was reorged away".
//   - /rest/block/HASH.bin → the serialized block ← getblock HASH 0 (btcd
//     serves stale blocks too, which electrs reads to undo them). Unknown: 404.
//   - /rest/spenttxouts/HASH.bin → for each transaction of the block, the
//     outputs its inputs spend (CompactSize count of transactions, then per
//     transaction a CompactSize count and that many serialized TxOuts; none
//     for the coinbase) ← getblock HASH 0, then getrawtransaction prevtxid 0
//     for every distinct previous transaction outside the block (btcd runs with
//     --txindex). Kept by block hash, so that electrs can undo a stale block
//     whose previous transactions btcd no longer finds.
//   - /rest/blockpart/HASH.bin?offset=O&size=S → bytes [O, O+S) of the block
//     ← getblock HASH 0. A range outside the block: 400.
//
// Blocks fetched are kept in a small cache by hash (a block's bytes never
// change). btcd unreachable: 503, which electrs retries.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// maxRESTHeaders is Bitcoin Core's MAX_REST_HEADERS_RESULTS.
const maxRESTHeaders = 2000

// restBlockCacheSize bounds the proxy's cache of raw blocks.
const restBlockCacheSize = 256

// errRESTStatus carries the HTTP status of a REST failure.
type errRESTStatus struct {
	status int
	msg    string
}

func (e *errRESTStatus) Error() string { return e.msg }

func restErr(status int, format string, args ...any) error {
	return &errRESTStatus{status: status, msg: fmt.Sprintf(format, args...)}
}

// blockCache keeps raw blocks and their spent outputs (the /rest/spenttxouts
// body) by block hash; neither ever changes for a given hash. Keeping the
// spent outputs matters on a reorg: electrs asks again for those of the blocks
// it undoes, whose previous transactions btcd may no longer find (a stale
// block's transactions leave the txindex, and a conflicted one does not return
// to the mempool). Each kind is kept in two generations of up to
// restBlockCacheSize entries: when the current one is full it becomes the
// previous one, so the most recent entries always survive.
type blockCache struct {
	mu     sync.Mutex
	blocks cacheGens
	spent  cacheGens
}

type cacheGens struct{ cur, prev map[chainhash.Hash][]byte }

func (c *blockCache) get(h chainhash.Hash) ([]byte, bool) { return c.lookup(&c.blocks, h) }
func (c *blockCache) put(h chainhash.Hash, b []byte)      { c.store(&c.blocks, h, b) }

func (c *blockCache) lookup(g *cacheGens, h chainhash.Hash) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := g.cur[h]; ok {
		return b, true
	}
	b, ok := g.prev[h]
	return b, ok
}

func (c *blockCache) store(g *cacheGens, h chainhash.Hash, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g.cur == nil || len(g.cur) >= restBlockCacheSize {
		g.prev, g.cur = g.cur, make(map[chainhash.Hash][]byte)
	}
	g.cur[h] = b
}

// rpcResult is one answer of a rest call to btcd: a result or btcd's error.
type rpcResult struct {
	raw  json.RawMessage
	rerr *rpcError
}

// restRPC answers REST paths from btcd through call.
type restRPC struct {
	call  backend
	cache *blockCache
}

// batch sends reqs (method, params) to btcd as one batch and returns the
// answers in request order. A transport failure is a 503.
func (r restRPC) batch(ctx context.Context, method string, params [][]json.RawMessage) ([]rpcResult, error) {
	reqs := make([]rpcRequest, len(params))
	for i, p := range params {
		reqs[i] = rpcRequest{JSONRPC: "1.0", Method: method, Params: p, ID: json.RawMessage(strconv.Itoa(i))}
	}
	out := make([]rpcResult, len(reqs))
	for start := 0; start < len(reqs); start += 500 {
		chunk := reqs[start:min(start+500, len(reqs))]
		rs, err := r.call(ctx, chunk)
		if err != nil {
			return nil, restErr(http.StatusServiceUnavailable, "btcd %s: %v", method, err)
		}
		got := 0
		for _, resp := range rs {
			i, err := strconv.Atoi(string(resp.ID))
			if err != nil || i < start || i >= start+len(chunk) {
				continue
			}
			got++
			if len(resp.Error) > 0 && !bytes.Equal(resp.Error, []byte("null")) {
				var e rpcError
				if err := json.Unmarshal(resp.Error, &e); err != nil {
					e = rpcError{Code: rpcCodeInternal, Message: string(resp.Error)}
				}
				out[i].rerr = &e
				continue
			}
			out[i].raw = resp.Result
		}
		if got != len(chunk) {
			return nil, restErr(http.StatusBadGateway, "btcd answered %d of %d %s calls", got, len(chunk), method)
		}
	}
	return out, nil
}

func (r restRPC) one(ctx context.Context, method string, params ...json.RawMessage) (rpcResult, error) {
	rs, err := r.batch(ctx, method, [][]json.RawMessage{params})
	if err != nil {
		return rpcResult{}, err
	}
	return rs[0], nil
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// block returns the raw block hash (getblock hash 0), from the cache when it
// can; a block btcd does not know is a 404.
func (r restRPC) block(ctx context.Context, h chainhash.Hash) ([]byte, error) {
	if b, ok := r.cache.get(h); ok {
		return b, nil
	}
	res, err := r.one(ctx, "getblock", jsonString(h.String()), json.RawMessage("0"))
	if err != nil {
		return nil, err
	}
	if res.rerr != nil {
		return nil, restErr(http.StatusNotFound, "%s not found (btcd: %s)", h, res.rerr.Message)
	}
	var hexBlock string
	if err := json.Unmarshal(res.raw, &hexBlock); err != nil {
		return nil, restErr(http.StatusBadGateway, "btcd getblock %s: %v", h, err)
	}
	b, err := hex.DecodeString(hexBlock)
	if err != nil || len(b) < 81 {
		return nil, restErr(http.StatusBadGateway, "btcd getblock %s: not a block", h)
	}
	if got := chainhash.DoubleHashH(b[:80]); got != h {
		return nil, restErr(http.StatusBadGateway, "btcd getblock %s answered block %s", h, got)
	}
	r.cache.put(h, b)
	return b, nil
}

// blockHashByHeight is /rest/blockhashbyheight/H.bin.
func (r restRPC) blockHashByHeight(ctx context.Context, height int64) ([]byte, error) {
	res, err := r.one(ctx, "getblockhash", json.RawMessage(strconv.FormatInt(height, 10)))
	if err != nil {
		return nil, err
	}
	if res.rerr != nil {
		return nil, restErr(http.StatusNotFound, "Block height out of range")
	}
	h, err := decodeHashResult(res.raw)
	if err != nil {
		return nil, err
	}
	return h[:], nil
}

func decodeHashResult(raw json.RawMessage) (chainhash.Hash, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return chainhash.Hash{}, restErr(http.StatusBadGateway, "btcd block hash %s: %v", truncate(string(raw), 80), err)
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil || len(s) != 64 {
		return chainhash.Hash{}, restErr(http.StatusBadGateway, "btcd block hash %q is not a hash", truncate(s, 80))
	}
	return *h, nil
}

// headers is /rest/headers: up to count headers of the main chain from start.
func (r restRPC) headers(ctx context.Context, start chainhash.Hash, count int) ([]byte, error) {
	res, err := r.one(ctx, "getblockheader", jsonString(start.String()), json.RawMessage("true"))
	if err != nil {
		return nil, err
	}
	if res.rerr != nil {
		return nil, nil // unknown, or (btcd) not in the main chain
	}
	var info struct {
		Height int64 `json:"height"`
	}
	if err := json.Unmarshal(res.raw, &info); err != nil {
		return nil, restErr(http.StatusBadGateway, "btcd getblockheader %s: %v", start, err)
	}
	tipRes, err := r.one(ctx, "getblockcount")
	if err != nil {
		return nil, err
	}
	var tip int64
	if tipRes.rerr != nil || json.Unmarshal(tipRes.raw, &tip) != nil {
		return nil, restErr(http.StatusBadGateway, "btcd getblockcount failed")
	}
	n := min(int64(count), tip-info.Height+1)
	if n <= 0 {
		return nil, nil
	}
	heights := make([][]json.RawMessage, n)
	for i := range heights {
		heights[i] = []json.RawMessage{json.RawMessage(strconv.FormatInt(info.Height+int64(i), 10))}
	}
	hashRes, err := r.batch(ctx, "getblockhash", heights)
	if err != nil {
		return nil, err
	}
	var hashes []chainhash.Hash
	for _, hr := range hashRes {
		if hr.rerr != nil {
			break // the chain got shorter meanwhile
		}
		h, err := decodeHashResult(hr.raw)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	if len(hashes) == 0 || hashes[0] != start {
		return nil, nil // start is not (or no longer) on the main chain
	}
	params := make([][]json.RawMessage, len(hashes))
	for i, h := range hashes {
		params[i] = []json.RawMessage{jsonString(h.String()), json.RawMessage("false")}
	}
	hdrRes, err := r.batch(ctx, "getblockheader", params)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	prev := chainhash.Hash{}
	for i, hr := range hdrRes {
		var s string
		if hr.rerr != nil || json.Unmarshal(hr.raw, &s) != nil {
			break
		}
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != 80 || chainhash.DoubleHashH(raw) != hashes[i] {
			return nil, restErr(http.StatusBadGateway, "btcd getblockheader %s: not its header", hashes[i])
		}
		if i > 0 && !bytes.Equal(raw[4:36], prev[:]) {
			break // a reorg between the calls: stop where the chain stops linking
		}
		prev = hashes[i]
		out.Write(raw)
	}
	return out.Bytes(), nil
}

// spentTxOuts is /rest/spenttxouts/HASH.bin. Previous transactions in the
// same block are taken from the block; the others from btcd.
func (r restRPC) spentTxOuts(ctx context.Context, h chainhash.Hash) ([]byte, error) {
	if b, ok := r.cache.lookup(&r.cache.spent, h); ok {
		return b, nil
	}
	raw, err := r.block(ctx, h)
	if err != nil {
		return nil, err
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, restErr(http.StatusBadGateway, "block %s does not parse: %v", h, err)
	}
	inBlock := make(map[chainhash.Hash]*wire.MsgTx, len(blk.Transactions))
	for _, tx := range blk.Transactions {
		inBlock[tx.TxHash()] = tx
	}
	// Distinct previous transactions not in the block, in first-use order.
	var prevIDs []chainhash.Hash
	seen := make(map[chainhash.Hash]int)
	for i, tx := range blk.Transactions {
		if i == 0 {
			continue // the coinbase spends nothing
		}
		for _, in := range tx.TxIn {
			if _, ok := inBlock[in.PreviousOutPoint.Hash]; ok {
				continue
			}
			if _, ok := seen[in.PreviousOutPoint.Hash]; !ok {
				seen[in.PreviousOutPoint.Hash] = len(prevIDs)
				prevIDs = append(prevIDs, in.PreviousOutPoint.Hash)
			}
		}
	}
	params := make([][]json.RawMessage, len(prevIDs))
	for i, id := range prevIDs {
		params[i] = []json.RawMessage{jsonString(id.String()), json.RawMessage("0")}
	}
	prevTxs := make([]*wire.MsgTx, len(prevIDs))
	if len(params) > 0 {
		res, err := r.batch(ctx, "getrawtransaction", params)
		if err != nil {
			return nil, err
		}
		for i, tr := range res {
			var s string
			if tr.rerr != nil {
				return nil, restErr(http.StatusInternalServerError, "previous transaction %s of block %s: btcd: %s", prevIDs[i], h, tr.rerr.Message)
			}
			if json.Unmarshal(tr.raw, &s) != nil {
				return nil, restErr(http.StatusBadGateway, "previous transaction %s: not a string", prevIDs[i])
			}
			b, err := hex.DecodeString(s)
			if err != nil {
				return nil, restErr(http.StatusBadGateway, "previous transaction %s: not hex", prevIDs[i])
			}
			var tx wire.MsgTx
			if err := tx.Deserialize(bytes.NewReader(b)); err != nil || tx.TxHash() != prevIDs[i] {
				return nil, restErr(http.StatusBadGateway, "previous transaction %s: btcd answered another transaction", prevIDs[i])
			}
			prevTxs[i] = &tx
		}
	}
	var out bytes.Buffer
	if err := wire.WriteVarInt(&out, 0, uint64(len(blk.Transactions))); err != nil {
		return nil, err
	}
	for i, tx := range blk.Transactions {
		if i == 0 {
			_ = wire.WriteVarInt(&out, 0, 0)
			continue
		}
		_ = wire.WriteVarInt(&out, 0, uint64(len(tx.TxIn)))
		for _, in := range tx.TxIn {
			prev, ok := inBlock[in.PreviousOutPoint.Hash]
			if !ok {
				prev = prevTxs[seen[in.PreviousOutPoint.Hash]]
			}
			idx := in.PreviousOutPoint.Index
			if int(idx) >= len(prev.TxOut) {
				return nil, restErr(http.StatusInternalServerError, "block %s spends %s, which has %d outputs", h, in.PreviousOutPoint, len(prev.TxOut))
			}
			if err := wire.WriteTxOut(&out, 0, 0, prev.TxOut[idx]); err != nil {
				return nil, err
			}
		}
	}
	r.cache.store(&r.cache.spent, h, out.Bytes())
	return out.Bytes(), nil
}

// handleREST answers one REST path (with its query) from btcd. It returns the
// body, or an error carrying the HTTP status (*errRESTStatus).
func (r restRPC) handleREST(ctx context.Context, path string, query func(string) string) ([]byte, error) {
	rest, ok := strings.CutPrefix(path, "/rest/")
	if !ok {
		return nil, restErr(http.StatusNotFound, "not a REST path")
	}
	parts := strings.Split(rest, "/")
	last := parts[len(parts)-1]
	stem, isBin := strings.CutSuffix(last, ".bin")
	if !isBin {
		return nil, restErr(http.StatusNotFound, "output format not found (available: bin)")
	}
	parts[len(parts)-1] = stem
	hashArg := func(s string) (chainhash.Hash, error) {
		h, err := chainhash.NewHashFromStr(s)
		if err != nil || len(s) != 64 {
			return chainhash.Hash{}, restErr(http.StatusBadRequest, "Invalid hash: %s", truncate(s, 80))
		}
		return *h, nil
	}
	switch {
	case parts[0] == "blockhashbyheight" && len(parts) == 2:
		height, err := strconv.ParseInt(parts[1], 10, 32)
		if err != nil || height < 0 {
			return nil, restErr(http.StatusBadRequest, "Invalid height: %s", truncate(parts[1], 80))
		}
		return r.blockHashByHeight(ctx, height)

	case parts[0] == "headers" && (len(parts) == 3 || len(parts) == 2):
		countStr, hashStr := query("count"), parts[len(parts)-1]
		if len(parts) == 3 {
			countStr = parts[1]
		}
		if countStr == "" {
			countStr = "5" // Core's default
		}
		count, err := strconv.Atoi(countStr)
		if err != nil || count < 1 || count > maxRESTHeaders {
			return nil, restErr(http.StatusBadRequest, "Header count is invalid or out of acceptable range (1-%d): %s", maxRESTHeaders, truncate(countStr, 20))
		}
		h, err := hashArg(hashStr)
		if err != nil {
			return nil, err
		}
		return r.headers(ctx, h, count)

	case parts[0] == "block" && len(parts) == 2:
		h, err := hashArg(parts[1])
		if err != nil {
			return nil, err
		}
		return r.block(ctx, h)

	case parts[0] == "spenttxouts" && len(parts) == 2:
		h, err := hashArg(parts[1])
		if err != nil {
			return nil, err
		}
		return r.spentTxOuts(ctx, h)

	case parts[0] == "blockpart" && len(parts) == 2:
		h, err := hashArg(parts[1])
		if err != nil {
			return nil, err
		}
		offset, err1 := strconv.ParseUint(query("offset"), 10, 32)
		size, err2 := strconv.ParseUint(query("size"), 10, 32)
		if err1 != nil || err2 != nil {
			return nil, restErr(http.StatusBadRequest, "blockpart needs numeric offset and size")
		}
		b, err := r.block(ctx, h)
		if err != nil {
			return nil, err
		}
		if offset+size > uint64(len(b)) {
			return nil, restErr(http.StatusBadRequest, "Block part [%d, %d) outside the block's %d bytes", offset, offset+size, len(b))
		}
		return b[offset : offset+size], nil
	}
	return nil, restErr(http.StatusNotFound, "unknown REST path %s", truncate(path, 100))
}

// serveREST answers a GET /rest/… with the proxy's own btcd credentials.
func (p *rpcProxy) serveREST(w http.ResponseWriter, req *http.Request) {
	r := restRPC{
		call:  func(ctx context.Context, reqs []rpcRequest) ([]rpcResponse, error) { return p.forward(ctx, "", reqs) },
		cache: &p.blocks,
	}
	body, err := r.handleREST(req.Context(), req.URL.Path, req.URL.Query().Get)
	if err != nil {
		var se *errRESTStatus
		status := http.StatusInternalServerError
		if errors.As(err, &se) {
			status = se.status
		}
		p.log.Debug("rest request failed", "path", req.URL.Path, "status", status, "err", err)
		writeText(w, status, err.Error())
		return
	}
	writeBody(w, http.StatusOK, "application/octet-stream", body)
}
