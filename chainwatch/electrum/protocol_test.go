package electrum

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// The two headers of protocol-methods.rst, blockchain.block.headers, "Example Response"
// (mainnet blocks 0 and 1).
const (
	specHeader0 = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
	specHeader1 = "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299"
	genesisHash = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
	block1Hash  = "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"
)

func blockHash(h []byte) string { return chainhash.DoubleHashH(h).String() }

func TestParseBlockHeadersSpecExample(t *testing.T) {
	v16 := `{"count": 2, "headers": ["` + specHeader0 + `", "` + specHeader1 + `"], "max": 2016}`
	v14 := `{"count": 2, "hex": "` + specHeader0 + specHeader1 + `", "max": 2016}`
	for name, raw := range map[string]string{"1.6 headers list (the spec's example)": v16, "1.4 concatenated hex": v14} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseBlockHeaders(json.RawMessage(raw), 2016)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Headers) != 2 || got.Max != 2016 || blockHash(got.Headers[0]) != genesisHash || blockHash(got.Headers[1]) != block1Hash {
				t.Fatalf("got %d headers (max %d), hashes %v", len(got.Headers), got.Max, got.Headers)
			}
		})
	}
	empty, err := ParseBlockHeaders(json.RawMessage(`{"count":0,"hex":"","max":2016}`), 10)
	if err != nil || len(empty.Headers) != 0 {
		t.Errorf("past the tip (ElectrumX answers count 0, hex \"\"): %+v %v", empty, err)
	}
	for _, tc := range []struct{ name, raw string }{
		{"count above the headers", `{"count":3,"headers":["` + specHeader0 + `","` + specHeader1 + `"],"max":2016}`},
		{"more than requested", `{"count":2,"headers":["` + specHeader0 + `","` + specHeader1 + `"],"max":2016}`},
		{"short header", `{"count":1,"headers":["` + specHeader0[:158] + `"],"max":2016}`},
		{"not hex", `{"count":1,"headers":["` + strings.Repeat("zz", 80) + `"],"max":2016}`},
		{"hex not whole headers", `{"count":1,"hex":"` + specHeader0 + `00","max":2016}`},
		{"hex and headers disagree", `{"count":1,"hex":"` + specHeader1 + `","headers":["` + specHeader0 + `"],"max":2016}`},
		{"neither", `{"count":0,"max":2016}`},
		{"no count", `{"headers":[],"max":2016}`},
		{"not an object", `"` + specHeader0 + `"`},
	} {
		requested := 2016
		if tc.name == "more than requested" {
			requested = 1
		}
		if _, err := ParseBlockHeaders(json.RawMessage(tc.raw), requested); !errors.Is(err, ErrMalformedMessage) {
			t.Errorf("%s: err = %v, want ErrMalformedMessage", tc.name, err)
		}
	}
}

// The history of protocol-basics.rst, "Status Example" (regtest scripthash f04bf26f…), in the
// server's canonical order, and the status it gives.
var specHistory = []HistoryEntry{
	{"a6c9c361bd0bc536d6a22648efbf8f9b200e425ef6c3a7a9669dc444c532a347", 2472},
	{"9c42f84b2fcdaff676ba25d9d4941741cc0d1a01cce0c23fdc4c0b2afa38431c", 2473},
	{"770f2d4371b3fabb902dd9a103e2dd005fcd3971181078fca4a2a1d6ff127b30", 2473},
	{"80b19848aed792565ab7c5a79b7c2a00fbf985741579396ebe0ab6098e607311", 0},
	{"e02a1dadfa83b996b24175df807b271ea5d02937ef5b35c195fac1e1bdc3198f", 0},
	{"bb4c8ab438c13b89ca80d1d5bee25b0b6b7f55673f4d801998ba97db161d9e85", -1},
}

const specStatus = "78e96c6562cafa71c115503b9411fdfdc595a45031e2ab76ff75162fe1b0590d"

func TestScriptStatusSpecExample(t *testing.T) {
	if got := ScriptStatus(specHistory); got != specStatus {
		t.Fatalf("ScriptStatus = %s, want the spec's %s", got, specStatus)
	}
	if got := ScriptStatus(nil); got != "" {
		t.Errorf("empty history: %q, want null", got)
	}
	if !IsCanonical(specHistory) {
		t.Error("the spec's order is not canonical")
	}
	// The mempool part in another order (a 1.4 server may list it so): not canonical, another
	// status; sorting restores the spec's order. The confirmed part keeps its block order
	// (9c42… before 770f… at 2473: position in block, not txid).
	shuffled := append([]HistoryEntry(nil), specHistory...)
	shuffled[3], shuffled[5] = shuffled[5], shuffled[3]
	shuffled[4], shuffled[5] = shuffled[5], shuffled[4]
	if IsCanonical(shuffled) || ScriptStatus(shuffled) == specStatus {
		t.Fatalf("shuffled mempool order taken as canonical: %v", shuffled)
	}
	CanonicalMempoolOrder(shuffled)
	if ScriptStatus(shuffled) != specStatus {
		t.Fatalf("sorted = %v, want the spec's order", shuffled)
	}
}

// server16 is a test Electrum server that negotiates like Fulcrum 2.1 (protocol 1.4 to 1.6)
// or, with maxProto "1.4", like electrs 0.12, and answers in the negotiated protocol's shapes:
// blockchain.block.headers as "headers" (1.6) or "hex" (1.4); blockchain.estimatefee with an
// optional mode (1.6) or exactly one parameter (1.4, as electrs: invalid params otherwise);
// blockchain.relayfee (1.4 only) and mempool.get_info (1.6 only). A first message other than
// server.version closes the connection (1.6 makes negotiation mandatory and first).
type server16 struct {
	maxProto string
	mu       sync.Mutex
	modes    []string // estimatefee modes received ("" for none)
	methods  []string
}

func (s *server16) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer conn.Close(); s.session(conn) }()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

func (s *server16) session(conn net.Conn) {
	r := bufio.NewReader(conn)
	proto := ""
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var q struct {
			ID     uint64            `json:"id"`
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
		}
		if json.Unmarshal(line, &q) != nil {
			return
		}
		s.mu.Lock()
		s.methods = append(s.methods, q.Method)
		s.mu.Unlock()
		result := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", q.ID, b)
		}
		fail := func(code int, msg string) {
			fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":%d,"error":{"code":%d,"message":%q}}`+"\n", q.ID, code, msg)
		}
		if proto == "" {
			if q.Method != "server.version" || len(q.Params) < 2 {
				return // 1.6: version negotiation comes first
			}
			var rng []string
			if json.Unmarshal(q.Params[1], &rng) != nil || len(rng) != 2 {
				return
			}
			proto = s.maxProto
			if versionInRange(rng[1], "1.4", s.maxProto) {
				proto = rng[1]
			}
			if !versionInRange(proto, rng[0], rng[1]) {
				fail(1, "unsupported protocol version")
				return
			}
			result([]string{"Server16 0.1", proto})
			continue
		}
		v16 := proto == "1.6"
		switch q.Method {
		case "blockchain.block.headers":
			if v16 {
				result(map[string]any{"count": 2, "headers": []string{specHeader0, specHeader1}, "max": 2016})
			} else {
				result(map[string]any{"count": 2, "hex": specHeader0 + specHeader1, "max": 2016})
			}
		case "blockchain.estimatefee":
			if len(q.Params) > 1 && !v16 {
				fail(-32602, "invalid params")
				continue
			}
			mode := ""
			if len(q.Params) > 1 {
				json.Unmarshal(q.Params[1], &mode)
			}
			s.mu.Lock()
			s.modes = append(s.modes, mode)
			s.mu.Unlock()
			result(0.00012)
		case "blockchain.relayfee":
			if v16 {
				fail(-32601, "unknown method")
				continue
			}
			result(0.00002)
		case "mempool.get_info":
			if !v16 {
				fail(-32601, "unknown method")
				continue
			}
			result(map[string]float64{"mempoolminfee": 0.00003, "minrelaytxfee": 0.00003, "incrementalrelayfee": 0.00001})
		default:
			fail(-32601, "unknown method")
		}
	}
}

func TestProtocol16Server(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name              string
		serverMax, optMax string
		wantProto         string
		wantRelay         FeeRate
		wantMode          string
	}{
		{"Fulcrum-like server, default range: 1.6", "1.6", "", "1.6", 3, "conservative"},
		{"Fulcrum-like server, client capped at 1.4", "1.6", "1.4", "1.4", 2, ""},
		{"electrs-like server (1.4 only), default range: 1.4", "1.4", "", "1.4", 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server16{maxProto: tc.serverMax}
			opts := quiet()
			opts.ProtocolMax = tc.optMax
			c, err := Dial(ctx, s.serve(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.ProtocolVersion() != tc.wantProto || c.ProtocolAtLeast(Protocol16) != (tc.wantProto == "1.6") {
				t.Fatalf("negotiated %q (≥1.6: %v), want %s", c.ProtocolVersion(), c.ProtocolAtLeast(Protocol16), tc.wantProto)
			}
			hs, err := c.BlockHeaders(ctx, 0, 2)
			if err != nil || len(hs.Headers) != 2 || blockHash(hs.Headers[1]) != block1Hash {
				t.Fatalf("BlockHeaders: %v, %d headers", err, len(hs.Headers))
			}
			est := c.EstimateFeeMode(ctx, 2, FeeModeConservative, 0, 0)
			if !est.Estimated || est.Rate != 12 {
				t.Fatalf("EstimateFeeMode: %+v (a 1.4 server must not be sent the mode)", est)
			}
			if plain := c.EstimateFee(ctx, 2, 0, 0); !plain.Estimated {
				t.Fatalf("EstimateFee: %+v", plain)
			}
			s.mu.Lock()
			modes := append([]string(nil), s.modes...)
			s.mu.Unlock()
			if len(modes) != 2 || modes[0] != tc.wantMode || modes[1] != "" {
				t.Errorf("estimatefee modes sent: %q, want [%q \"\"]", modes, tc.wantMode)
			}
			relay, err := c.RelayFee(ctx)
			if err != nil || relay != tc.wantRelay {
				t.Errorf("RelayFee = %v, %v; want %v sat/vB", relay, err, tc.wantRelay)
			}
		})
	}
}

func TestEstimateFeeModeRejectsUnknownMode(t *testing.T) {
	c := &Client{Protocol: "1.6"}
	est := c.EstimateFeeMode(context.Background(), 2, FeeMode("YOLO"), 4, 0)
	if est.Estimated || est.Rate != 4 || !errors.Is(est.Reason, ErrBadRequest) {
		t.Fatalf("unknown mode: %+v, want the fallback and ErrBadRequest without asking", est)
	}
}

func TestRelayFeeImplausible(t *testing.T) {
	for _, answer := range []string{`0`, `-1`, `null`, `0.5`, `"0.00001"`} {
		addr := fakeMany(t, "1.4", nil, answerEach(func(rawReq) string { return answer }))
		c, err := Dial(context.Background(), "tcp://"+addr, quiet())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.RelayFee(context.Background())
		c.Close()
		if answer == `"0.00001"` {
			if err == nil {
				t.Errorf("relayfee %s accepted", answer)
			}
			continue
		}
		if !errors.Is(err, ErrImplausibleFee) {
			t.Errorf("relayfee %s: err = %v, want ErrImplausibleFee", answer, err)
		}
	}
}

func TestProtocolAtLeast(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"1.6", "1.6", true}, {"1.6.1", "1.6", true}, {"1.4.3", "1.6", false}, {"1.4", "1.4", true}, {"", "1.4", false}, {"x", "1.4", false},
	} {
		if got := (&Client{Protocol: tc.have}).ProtocolAtLeast(tc.want); got != tc.ok {
			t.Errorf("%q at least %q = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
}
