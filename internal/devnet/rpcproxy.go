package devnet

// rpcproxy.go — the compatibility proxy between the Electrum servers (ElectrumX,
// electrs 0.12) and btcd, which speaks Bitcoin Core's JSON-RPC with a few
// differences and has no REST interface. Every other call passes, byte for
// byte, to btcd.
//
// JSON-RPC (POST), rewritten before forwarding (rewriteRequest):
//   - getblock "hash" true|false → getblock "hash" 1|0 (ElectrumX).
//   - getrawtransaction "txid" true|false ["blockhash"|null] →
//     getrawtransaction "txid" 1|0: btcd takes an integer verbose flag and no
//     block hash (electrs sends both).
//
// JSON-RPC answered by the proxy from other btcd calls (answerBridged):
//   - getnetworkinfo ← getinfo (ElectrumX, electrs: version, relayfee).
//   - estimatesmartfee n [mode] ← estimatefee n, the feerate rounded to 8
//     decimals (electrs parses it as a BTC amount and refuses more).
//   - getblockchaininfo ← getblockchaininfo plus "initialblockdownload": false
//     (electrs waits for the field to be false before indexing; btcd omits it).
//   - getmempoolentry "txid" ← getrawmempool true, once per HTTP body (electrs
//     batches one getmempoolentry per mempool transaction; without it no
//     unconfirmed payment ever appears): vsize, weight, time, height,
//     fees.base/modified/ancestor/descendant, depends.
//
// REST (GET /rest/…, unauthenticated as in Bitcoin Core; electrs 0.12 reads
// blocks this way), answered from btcd's RPC with the proxy's own credentials:
// see rpcproxy_rest.go.
//
// Every reply carries a Content-Length: electrs's HTTP clients cannot read a
// chunked body, which net/http sends for bodies above its 2 KB buffer.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// rpcRequest is one JSON-RPC request as ElectrumX sends it (1.0 or 2.0).
type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc,omitempty"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
	ID      json.RawMessage   `json:"id"`
}

// rpcResponse is one JSON-RPC response. Result and Error are kept raw so that
// responses from btcd pass through unchanged.
type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc,omitempty"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
	ID      json.RawMessage `json:"id"`
}

// rpcError is the JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// JSON-RPC error codes used by the proxy's own answers (Bitcoin Core's values).
const (
	rpcCodeMisc                = -1
	rpcCodeInvalidParams       = -8
	rpcCodeInvalidAddressOrKey = -5
	rpcCodeInternal            = -32603
)

// backend sends a batch of requests to btcd and returns the responses, in any
// order, matched by id. The proxy's bridged calls use it to ask btcd for the
// data they translate.
type backend func(ctx context.Context, reqs []rpcRequest) ([]rpcResponse, error)

// rewriteRequest turns a request into what btcd understands, when btcd merely
// spells it differently. It returns the request unchanged when no rewrite
// applies, and changed=true otherwise.
//
//   - getblock "hash" true|false → getblock "hash" 1|0: Bitcoin Core accepted a
//     boolean verbose flag (and ElectrumX still sends one); btcd only takes the
//     integer verbosity.
//   - getrawtransaction "txid" true|false ["blockhash"|null] → getrawtransaction
//     "txid" 1|0: electrs sends Core's boolean and block hash; btcd takes an
//     integer and no block hash (it finds the transaction with --txindex).
func rewriteRequest(req rpcRequest) (out rpcRequest, changed bool) {
	if req.Method == "getrawtransaction" && len(req.Params) >= 2 {
		out = req
		out.Params = append([]json.RawMessage(nil), req.Params[:2]...)
		var verbose bool
		if err := json.Unmarshal(req.Params[1], &verbose); err == nil {
			if verbose {
				out.Params[1] = json.RawMessage("1")
			} else {
				out.Params[1] = json.RawMessage("0")
			}
		}
		return out, len(req.Params) > 2 || !bytes.Equal(out.Params[1], req.Params[1])
	}
	if req.Method == "getblock" && len(req.Params) >= 2 {
		var verbose bool
		if err := json.Unmarshal(req.Params[1], &verbose); err == nil {
			out = req
			out.Params = append([]json.RawMessage(nil), req.Params...)
			if verbose {
				out.Params[1] = json.RawMessage("1")
			} else {
				out.Params[1] = json.RawMessage("0")
			}
			return out, true
		}
	}
	return req, false
}

// bridged reports whether the proxy answers method itself (from other btcd
// calls) instead of forwarding it.
func bridged(method string) bool {
	switch method {
	case "getnetworkinfo", "estimatesmartfee", "getblockchaininfo", "getmempoolentry":
		return true
	}
	return false
}

// answerBridged answers a bridged call by asking btcd for the equivalent data.
//
//   - getnetworkinfo: btcd has no such call; it is built from btcd's getinfo
//     (version, protocolversion, timeoffset, connections, relayfee) with the
//     remaining Bitcoin Core fields filled in for a local node. ElectrumX reads
//     "version" (daemon version in its banner) and "relayfee" (blockchain.relayfee).
//   - estimatesmartfee n [mode]: btcd has only the older estimatefee n. Its
//     answer (BTC/kvB) becomes {"feerate": x, "blocks": n}; when btcd cannot
//     estimate, {"errors": [...], "blocks": n} as Bitcoin Core answers, which
//     ElectrumX turns into -1. Called without a target (ElectrumX probes for the
//     method that way) it fails with a parameter error, as Bitcoin Core does, so
//     that ElectrumX knows the method exists.
//   - getblockchaininfo: btcd's answer plus "initialblockdownload": false (a
//     regtest node that mines its own blocks is never in initial block
//     download) when btcd leaves the field out.
//   - getmempoolentry "txid": btcd has no such call; the entry is taken from
//     getrawmempool true (asked once per HTTP body, see mempoolMemo) in
//     Bitcoin Core's shape (vsize, weight, time, height, fees.base/modified/
//     ancestor/descendant in BTC, depends). A transaction not in the mempool
//     fails with Core's -5 "Transaction not in mempool".
func answerBridged(ctx context.Context, req rpcRequest, call backend, memo *mempoolMemo) rpcResponse {
	resp := rpcResponse{JSONRPC: req.JSONRPC, ID: req.ID, Result: json.RawMessage("null"), Error: json.RawMessage("null")}
	fail := func(code int, msg string) rpcResponse {
		b, _ := json.Marshal(rpcError{Code: code, Message: msg})
		resp.Error = b
		return resp
	}
	ok := func(v any) rpcResponse {
		b, err := json.Marshal(v)
		if err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: "+err.Error())
		}
		resp.Result = b
		return resp
	}
	one := func(method string, params ...json.RawMessage) (json.RawMessage, *rpcError, error) {
		rs, err := call(ctx, []rpcRequest{{JSONRPC: "1.0", Method: method, Params: params, ID: json.RawMessage(`"devnet-proxy"`)}})
		if err != nil {
			return nil, nil, err
		}
		if len(rs) != 1 {
			return nil, nil, fmt.Errorf("btcd answered %d responses to one request", len(rs))
		}
		if len(rs[0].Error) > 0 && !bytes.Equal(rs[0].Error, []byte("null")) {
			var e rpcError
			if err := json.Unmarshal(rs[0].Error, &e); err != nil {
				return nil, nil, fmt.Errorf("btcd error %s: %w", rs[0].Error, err)
			}
			return nil, &e, nil
		}
		return rs[0].Result, nil, nil
	}

	switch req.Method {
	case "getnetworkinfo":
		raw, rerr, err := one("getinfo")
		if err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: getinfo: "+err.Error())
		}
		if rerr != nil {
			return fail(rerr.Code, rerr.Message)
		}
		var info struct {
			Version         int64   `json:"version"`
			ProtocolVersion int64   `json:"protocolversion"`
			TimeOffset      int64   `json:"timeoffset"`
			Connections     int64   `json:"connections"`
			RelayFee        float64 `json:"relayfee"`
			Errors          string  `json:"errors"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: decoding getinfo: "+err.Error())
		}
		info.RelayFee = roundBTC(info.RelayFee)
		return ok(map[string]any{
			"version":             info.Version,
			"subversion":          "/btcd:" + btcdVersionString(info.Version) + "/",
			"protocolversion":     info.ProtocolVersion,
			"localservices":       "0000000000000009",
			"localrelay":          true,
			"timeoffset":          info.TimeOffset,
			"networkactive":       true,
			"connections":         info.Connections,
			"networks":            []any{},
			"relayfee":            info.RelayFee,
			"incrementalfee":      info.RelayFee,
			"localaddresses":      []any{},
			"warnings":            info.Errors,
			"devnet_bridged_from": "btcd getinfo",
		})

	case "estimatesmartfee":
		if len(req.Params) < 1 {
			return fail(rpcCodeMisc, "estimatesmartfee conf_target ( \"estimate_mode\" ): conf_target is required")
		}
		var target int64
		if err := json.Unmarshal(req.Params[0], &target); err != nil || target < 1 {
			return fail(rpcCodeInvalidParams, "estimatesmartfee: conf_target must be a positive integer")
		}
		raw, rerr, err := one("estimatefee", json.RawMessage(strconv.FormatInt(target, 10)))
		if err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: estimatefee: "+err.Error())
		}
		if rerr != nil {
			return ok(map[string]any{"errors": []string{rerr.Message}, "blocks": target})
		}
		var feerate float64
		if err := json.Unmarshal(raw, &feerate); err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: decoding estimatefee: "+err.Error())
		}
		if feerate <= 0 {
			return ok(map[string]any{"errors": []string{"Insufficient data or no feerate found"}, "blocks": target})
		}
		return ok(map[string]any{"feerate": roundBTC(feerate), "blocks": target})

	case "getblockchaininfo":
		raw, rerr, err := one("getblockchaininfo")
		if err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: getblockchaininfo: "+err.Error())
		}
		if rerr != nil {
			return fail(rerr.Code, rerr.Message)
		}
		var info map[string]json.RawMessage
		if err := json.Unmarshal(raw, &info); err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: decoding getblockchaininfo: "+err.Error())
		}
		if _, has := info["initialblockdownload"]; !has {
			info["initialblockdownload"] = json.RawMessage("false")
		}
		return ok(info)

	case "getmempoolentry":
		var txid string
		if len(req.Params) < 1 || json.Unmarshal(req.Params[0], &txid) != nil || len(txid) != 64 {
			return fail(rpcCodeInvalidParams, "getmempoolentry \"txid\": txid must be a 64-character hex string")
		}
		pool, err := memo.get(func() (json.RawMessage, *rpcError, error) { return one("getrawmempool", json.RawMessage("true")) })
		if err != nil {
			return fail(rpcCodeInternal, "devnet rpc proxy: getrawmempool: "+err.Error())
		}
		e, found := pool[txid]
		if !found {
			return fail(rpcCodeInvalidAddressOrKey, "Transaction not in mempool")
		}
		fee := roundBTC(e.Fee)
		depends := e.Depends
		if depends == nil {
			depends = []string{}
		}
		return ok(map[string]any{
			"vsize":               e.Vsize,
			"weight":              e.Weight,
			"time":                e.Time,
			"height":              e.Height,
			"fees":                map[string]float64{"base": fee, "modified": fee, "ancestor": fee, "descendant": fee},
			"depends":             depends,
			"spentby":             []string{},
			"bip125-replaceable":  true,
			"unbroadcast":         false,
			"devnet_bridged_from": "btcd getrawmempool true",
		})
	}
	return fail(rpcCodeInternal, "devnet rpc proxy: no bridge for "+req.Method)
}

// roundBTC rounds a BTC amount to whole satoshis (8 decimals): btcd computes
// feerates as floats (0.00012345678), which Core never sends and electrs
// refuses to parse as an amount.
func roundBTC(v float64) float64 { return math.Round(v*1e8) / 1e8 }

// mempoolEntry is one value of btcd's getrawmempool true.
type mempoolEntry struct {
	Size    int64    `json:"size"`
	Vsize   int64    `json:"vsize"`
	Weight  int64    `json:"weight"`
	Fee     float64  `json:"fee"`
	Time    int64    `json:"time"`
	Height  int64    `json:"height"`
	Depends []string `json:"depends"`
}

// mempoolMemo asks btcd for getrawmempool true at most once per HTTP body, for
// the getmempoolentry calls of one batch.
type mempoolMemo struct {
	done bool
	pool map[string]mempoolEntry
	err  error
}

func (m *mempoolMemo) get(fetch func() (json.RawMessage, *rpcError, error)) (map[string]mempoolEntry, error) {
	if m.done {
		return m.pool, m.err
	}
	m.done = true
	raw, rerr, err := fetch()
	switch {
	case err != nil:
		m.err = err
	case rerr != nil:
		m.err = fmt.Errorf("btcd error %d: %s", rerr.Code, rerr.Message)
	default:
		if err := json.Unmarshal(raw, &m.pool); err != nil {
			m.err = fmt.Errorf("decoding getrawmempool true: %w", err)
		}
	}
	return m.pool, m.err
}

// btcdVersionString renders btcd's integer version (major*1e6+minor*1e4+patch*1e2) as "0.24.2".
func btcdVersionString(v int64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/10000%100, v/100%100)
}

// handleBody processes one HTTP body from ElectrumX: a single request or a
// batch. Requests that need no bridging go to btcd together in one batch
// (rewritten where btcd spells them differently); bridged ones are answered by
// answerBridged. The reply keeps the request order. isBatch tells whether the
// reply must be a JSON array.
func handleBody(ctx context.Context, body []byte, call backend) (reply []byte, err error) {
	trimmed := bytes.TrimSpace(body)
	isBatch := len(trimmed) > 0 && trimmed[0] == '['
	var reqs []rpcRequest
	if isBatch {
		if err := json.Unmarshal(trimmed, &reqs); err != nil {
			return nil, fmt.Errorf("decoding JSON-RPC batch: %w", err)
		}
	} else {
		var r rpcRequest
		if err := json.Unmarshal(trimmed, &r); err != nil {
			return nil, fmt.Errorf("decoding JSON-RPC request: %w", err)
		}
		reqs = []rpcRequest{r}
	}

	out := make([]rpcResponse, len(reqs))
	var memo mempoolMemo
	var forward []rpcRequest
	var forwardIdx []int
	for i, r := range reqs {
		if bridged(r.Method) {
			out[i] = answerBridged(ctx, r, call, &memo)
			continue
		}
		r, _ = rewriteRequest(r)
		if r.JSONRPC == "" {
			// btcd answers a request without a "jsonrpc" member with an empty
			// body; Bitcoin Core (and so ElectrumX) treat it as JSON-RPC 1.0.
			r.JSONRPC = "1.0"
		}
		// Give each forwarded request a unique id so that answers can be matched
		// even when ElectrumX reuses ids; the original id is restored below.
		r.ID = json.RawMessage(strconv.Itoa(i))
		forward = append(forward, r)
		forwardIdx = append(forwardIdx, i)
	}
	if len(forward) > 0 {
		rs, err := call(ctx, forward)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]rpcResponse, len(rs))
		for _, r := range rs {
			byID[string(r.ID)] = r
		}
		for _, i := range forwardIdx {
			r, found := byID[strconv.Itoa(i)]
			if !found {
				b, _ := json.Marshal(rpcError{Code: rpcCodeInternal, Message: "devnet rpc proxy: btcd sent no answer"})
				r = rpcResponse{Result: json.RawMessage("null"), Error: b}
			}
			r.ID = reqs[i].ID
			r.JSONRPC = reqs[i].JSONRPC
			if len(r.Result) == 0 {
				r.Result = json.RawMessage("null")
			}
			if len(r.Error) == 0 {
				r.Error = json.RawMessage("null")
			}
			out[i] = r
		}
	}
	if isBatch {
		return json.Marshal(out)
	}
	return json.Marshal(out[0])
}

// rpcProxy is the in-process HTTP server that sits between ElectrumX and btcd.
type rpcProxy struct {
	listener net.Listener
	server   *http.Server
	target   string // btcd RPC URL, "http://127.0.0.1:PORT/"
	user     string
	pass     string
	client   *http.Client
	log      *slog.Logger
	done     chan struct{}
	blocks   blockCache // raw blocks for the REST paths
}

// startRPCProxy serves the proxy on ln until close. target is btcd's RPC URL.
func startRPCProxy(ln net.Listener, target, user, pass string, log *slog.Logger) *rpcProxy {
	p := &rpcProxy{
		listener: ln,
		target:   target,
		user:     user,
		pass:     pass,
		client:   &http.Client{Timeout: 60 * time.Second},
		log:      log,
		done:     make(chan struct{}),
	}
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		if err := p.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("rpc proxy stopped", "err", err)
		}
	}()
	return p
}

// ServeHTTP handles one JSON-RPC POST from an Electrum server, or a REST GET
// (see serveREST).
func (p *rpcProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/rest/") {
		p.serveREST(w, r)
		return
	}
	if r.Method != http.MethodPost {
		writeText(w, http.StatusMethodNotAllowed, "JSON-RPC over POST only")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	auth := r.Header.Get("Authorization")
	call := func(ctx context.Context, reqs []rpcRequest) ([]rpcResponse, error) {
		return p.forward(ctx, auth, reqs)
	}
	reply, err := handleBody(r.Context(), body, call)
	if err != nil {
		p.log.Warn("rpc proxy request failed", "err", err)
		writeText(w, http.StatusBadGateway, err.Error())
		return
	}
	writeBody(w, http.StatusOK, "application/json", reply)
}

// writeText sends a plain-text error or message with a Content-Length.
func writeText(w http.ResponseWriter, status int, msg string) {
	writeBody(w, status, "text/plain; charset=utf-8", []byte(msg+"\n"))
}

// writeBody sends body with an explicit Content-Length, never chunked.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// forward sends reqs to btcd as one batch (or a single request when there is
// one) with the caller's Authorization header, falling back to the proxy's own
// credentials when the caller sent none.
func (p *rpcProxy) forward(ctx context.Context, auth string, reqs []rpcRequest) ([]rpcResponse, error) {
	var body []byte
	var err error
	if len(reqs) == 1 {
		body, err = json.Marshal(reqs[0])
	} else {
		body, err = json.Marshal(reqs)
	}
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if auth != "" {
		hreq.Header.Set("Authorization", auth)
	} else {
		hreq.SetBasicAuth(p.user, p.pass)
	}
	hresp, err := p.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("btcd rpc: %w", err)
	}
	defer hresp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(hresp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("btcd rpc: reading answer: %w", err)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil, fmt.Errorf("btcd rpc: HTTP %s: %s", hresp.Status, truncate(string(trimmed), 200))
	}
	if trimmed[0] == '[' {
		var rs []rpcResponse
		if err := json.Unmarshal(trimmed, &rs); err != nil {
			return nil, fmt.Errorf("btcd rpc: decoding batch answer: %w", err)
		}
		return rs, nil
	}
	var r rpcResponse
	if err := json.Unmarshal(trimmed, &r); err != nil {
		return nil, fmt.Errorf("btcd rpc: decoding answer: %w", err)
	}
	return []rpcResponse{r}, nil
}

// close stops the server and waits for its goroutine.
func (p *rpcProxy) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.server.Shutdown(ctx)
	<-p.done
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
