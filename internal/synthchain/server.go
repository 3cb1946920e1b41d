package synthchain

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// Server serves a Chain over the Electrum protocol (1.4, newline-delimited JSON-RPC over TCP,
// batches as JSON arrays) with the methods a wallet watcher uses: server.version,
// server.ping, blockchain.block.header, blockchain.block.headers (at most 2016 per call, like
// ElectrumX), blockchain.headers.subscribe, blockchain.scripthash.subscribe / get_history,
// blockchain.transaction.get / get_merkle, blockchain.estimatefee, blockchain.relayfee. A
// scripthash's history is every placed transaction with an output paying that script. It never
// pushes notifications (the chain does not grow). For tests only.
type Server struct {
	chain *Chain
	ln    net.Listener
	hist  map[string][]histItem // scripthash (Electrum byte order, hex) → history
	txs   map[chainhash.Hash]txAt

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	counts map[string]int // requests by method
	froms  []int32        // start heights of blockchain.block.headers requests
	wg     sync.WaitGroup
}

type histItem struct {
	TxHash string `json:"tx_hash"`
	Height int32  `json:"height"`
}

type txAt struct {
	tx     *wire.MsgTx
	height int32
}

// Serve listens on 127.0.0.1 (a free port) and serves c until Close.
func Serve(c *Chain) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{chain: c, ln: ln, hist: map[string][]histItem{}, txs: map[chainhash.Hash]txAt{}, conns: map[net.Conn]struct{}{}, counts: map[string]int{}}
	for h := int32(1); h <= c.Height; h++ {
		for _, tx := range c.txs[h] {
			s.txs[tx.TxHash()] = txAt{tx, h}
			seen := map[string]bool{}
			for _, out := range tx.TxOut {
				sh := ScriptHash(out.PkScript)
				if !seen[sh] {
					seen[sh] = true
					s.hist[sh] = append(s.hist[sh], histItem{tx.TxHash().String(), h})
				}
			}
		}
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// ScriptHash is the Electrum scripthash of pkScript: sha256, byte-reversed, hex.
func ScriptHash(pkScript []byte) string {
	h := sha256.Sum256(pkScript)
	for i, j := 0, len(h)-1; i < j; i, j = i+1, j-1 {
		h[i], h[j] = h[j], h[i]
	}
	return hex.EncodeToString(h[:])
}

// URL returns "tcp://127.0.0.1:port".
func (s *Server) URL() string { return "tcp://" + s.ln.Addr().String() }

// Close stops listening, closes every connection and waits for their goroutines.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

type request struct {
	ID     json.RawMessage   `json:"id"`
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (s *Server) serve(c net.Conn) {
	r := bufio.NewReaderSize(c, 1<<16)
	w := bufio.NewWriterSize(c, 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.TrimSpace(line)
		var out any
		if len(line) > 0 && line[0] == '[' {
			var reqs []request
			if err := json.Unmarshal(line, &reqs); err != nil {
				return
			}
			resps := make([]response, len(reqs))
			for i, q := range reqs {
				resps[i] = s.answer(q)
			}
			out = resps
		} else {
			var q request
			if err := json.Unmarshal(line, &q); err != nil {
				return
			}
			out = s.answer(q)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return
		}
		w.Write(append(b, '\n'))
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// Requests returns how many requests of method the server answered.
func (s *Server) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[method]
}

// HeaderRequests returns the start heights of every blockchain.block.headers request, in order.
func (s *Server) HeaderRequests() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int32(nil), s.froms...)
}

func (s *Server) answer(q request) response {
	s.mu.Lock()
	s.counts[q.Method]++
	if q.Method == "blockchain.block.headers" && len(q.Params) > 0 {
		var from int32
		if json.Unmarshal(q.Params[0], &from) == nil {
			s.froms = append(s.froms, from)
		}
	}
	s.mu.Unlock()
	res, err := s.call(q.Method, q.Params)
	resp := response{JSONRPC: "2.0", ID: q.ID, Result: res}
	if err != nil {
		resp.Result, resp.Error = nil, &rpcError{Code: 1, Message: err.Error()}
	}
	return resp
}

func headerHex(h wire.BlockHeader) string {
	var b bytes.Buffer
	_ = h.Serialize(&b)
	return hex.EncodeToString(b.Bytes())
}

func (s *Server) call(method string, ps []json.RawMessage) (any, error) {
	intArg := func(i int) (int32, error) {
		var v int32
		if i >= len(ps) || json.Unmarshal(ps[i], &v) != nil {
			return 0, fmt.Errorf("%s: parameter %d is not an integer", method, i)
		}
		return v, nil
	}
	strArg := func(i int) (string, error) {
		var v string
		if i >= len(ps) || json.Unmarshal(ps[i], &v) != nil {
			return "", fmt.Errorf("%s: parameter %d is not a string", method, i)
		}
		return v, nil
	}
	c := s.chain
	switch method {
	case "server.version":
		return []string{"synthchain 1.0", "1.4"}, nil
	case "server.ping":
		return nil, nil
	case "blockchain.estimatefee":
		return 0.0001, nil
	case "blockchain.relayfee":
		return 0.00001, nil
	case "blockchain.headers.subscribe":
		return map[string]any{"height": c.Height, "hex": headerHex(c.Header(c.Height))}, nil
	case "blockchain.block.header":
		h, err := intArg(0)
		if err != nil || h < 0 || h > c.Height {
			return nil, fmt.Errorf("%s: bad height", method)
		}
		return headerHex(c.Header(h)), nil
	case "blockchain.block.headers":
		start, err := intArg(0)
		if err != nil {
			return nil, err
		}
		n, err := intArg(1)
		if err != nil {
			return nil, err
		}
		var sb strings.Builder
		hs := c.Headers(start, min(n, Interval))
		for _, h := range hs {
			sb.WriteString(headerHex(h))
		}
		return map[string]any{"hex": sb.String(), "count": len(hs), "max": Interval}, nil
	case "blockchain.scripthash.subscribe":
		sh, err := strArg(0)
		if err != nil {
			return nil, err
		}
		hist := s.hist[sh]
		if len(hist) == 0 {
			return nil, nil
		}
		var sb strings.Builder
		for _, x := range hist {
			fmt.Fprintf(&sb, "%s:%d:", x.TxHash, x.Height)
		}
		sum := sha256.Sum256([]byte(sb.String()))
		return hex.EncodeToString(sum[:]), nil
	case "blockchain.scripthash.get_history":
		sh, err := strArg(0)
		if err != nil {
			return nil, err
		}
		return append([]histItem{}, s.hist[sh]...), nil
	case "blockchain.transaction.get":
		id, err := strArg(0)
		if err != nil {
			return nil, err
		}
		h, err := chainhash.NewHashFromStr(id)
		if err != nil {
			return nil, err
		}
		t, ok := s.txs[*h]
		if !ok {
			return nil, fmt.Errorf("no such transaction %s", id)
		}
		var b bytes.Buffer
		_ = t.tx.Serialize(&b)
		return hex.EncodeToString(b.Bytes()), nil
	case "blockchain.transaction.get_merkle":
		id, err := strArg(0)
		if err != nil {
			return nil, err
		}
		h, err := chainhash.NewHashFromStr(id)
		if err != nil {
			return nil, err
		}
		t, ok := s.txs[*h]
		if !ok {
			return nil, fmt.Errorf("no such transaction %s", id)
		}
		branch, pos, _ := c.Proof(t.height, *h)
		m := make([]string, len(branch))
		for i, b := range branch {
			m[i] = b.String()
		}
		return map[string]any{"block_height": t.height, "merkle": m, "pos": pos}, nil
	}
	return nil, fmt.Errorf("unknown method %s", method)
}
