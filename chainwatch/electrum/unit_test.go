package electrum

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// fakeMany serves every accepted connection: it answers server.version with version, then runs
// handler. With cert set it speaks TLS. Framing edge cases only; real behaviour is tested
// against ElectrumX (integration_test.go).
func fakeMany(t *testing.T, version string, cert *tls.Certificate, handler func(r *bufio.Reader, w net.Conn)) (addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	if cert != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}})
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				r := bufio.NewReader(conn)
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				var q rawReq
				if json.Unmarshal(line, &q) != nil || q.Method != "server.version" {
					return
				}
				fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":%d,"result":["FakeX 0.1",%q]}`+"\n", q.ID, version)
				if handler != nil {
					handler(r, conn)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// answerEach answers every request, until the connection ends, with the JSON result reply(q).
func answerEach(reply func(q rawReq) string) func(r *bufio.Reader, w net.Conn) {
	return func(r *bufio.Reader, w net.Conn) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var q rawReq
			json.Unmarshal(line, &q)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", q.ID, reply(q))
		}
	}
}

// echoUntilEOF answers every request with its params.
func echoUntilEOF(r *bufio.Reader, w net.Conn) {
	answerEach(func(q rawReq) string { return string(q.Params) })(r, w)
}

// answerNull answers every request with a null result, after telling seen its method.
func answerNull(seen func(method string)) func(r *bufio.Reader, w net.Conn) {
	return answerEach(func(q rawReq) string { seen(q.Method); return "null" })
}

func quiet() Options { return Options{PingInterval: -1, RequestTimeout: 5 * time.Second} }

func TestServerErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		code int
		msg  string
		want error
	}{
		{1, "history too large", ErrHistoryTooLarge}, // ElectrumX 1.18
		{10001, "history too large", ErrHistoryTooLarge},
		{10001, "", ErrHistoryTooLarge},
		{-101, "excessive resource usage", ErrExcessiveResourceUsage},
		{-102, "server busy - request timed out", ErrServerBusy},
		{1, "the transaction was rejected by network rules.", ErrBadRequest},
		{1, "still catching up with daemon", ErrBadRequest},
		{2, "daemon error: ...", ErrDaemonError},
		{-32601, "unknown method", ErrMethodNotFound},
		{-32602, "invalid params", ErrInvalidParams},
		{-32600, "invalid request", ErrInvalidParams},
		{-32603, "boom", ErrServerInternal},
		// Fulcrum: max_history, as its async handler wraps the exception.
		{-32603, "internal error: History for 6c2f00aa exceeds max history 125000 with 125001 items!", ErrHistoryTooLarge},
		{4, "Subscription limit reached", ErrSubscriptionLimit},
		// electrs ≤ 0.11 with --index-lookup-limit; electrs 0.12 while its index is not ready.
		{1, ">1000 index entries, query may take too long", ErrHistoryTooLarge},
		{-32603, "unavailable index", ErrServerBusy},
		{0, "", ErrServerInternal},
	} {
		err := fmt.Errorf("wrapped: %w", &ServerError{Method: "m", Code: tc.code, Message: tc.msg})
		if !errors.Is(err, tc.want) {
			t.Errorf("code %d %q: kind %v, want %v", tc.code, tc.msg, (&ServerError{Code: tc.code, Message: tc.msg}).Kind(), tc.want)
		}
		var se *ServerError
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("code %d: errors.As lost the *ServerError", tc.code)
		}
	}
}

func TestBroadcastReasons(t *testing.T) {
	const rawTx = "0200000001abcdef"
	wrap := func(node string) string {
		return "the transaction was rejected by network rules.\n\n" + node + "\n[" + rawTx + "]"
	}
	for _, tc := range []struct {
		msg  string
		want error
	}{
		// btcd v0.24.2 (mempool/mempool.go), as ElectrumX passes them through.
		{wrap("TX rejected: already have transaction in mempool 1b21be"), ErrTxAlreadyKnown},
		{wrap("TX rejected: transaction already exists in blockchain"), ErrTxAlreadyKnown},
		{wrap("TX rejected: output already spent in mempool: output=5a8f:0, tx=1b21"), ErrTxConflict},
		{wrap("TX rejected: 1b21: replacement transaction has an insufficient fee rate"), ErrTxConflict},
		{wrap("TX rejected: orphan transaction 32a5 references outputs of unknown or fully-spent transaction 5a8f"), ErrMissingInputs},
		{wrap("TX rejected: transaction 1b21 has 100 fees which is under the required amount of 1000"), ErrFeeTooLow},
		{wrap("TX rejected: transaction 1b21 has insufficient priority (1 <= 5.76e+07)"), ErrFeeTooLow},
		{wrap("TX rejected: transaction 1b21 is not standard: transaction version 5 is not in the valid range"), ErrNonStandard},
		// Bitcoin Core.
		{wrap("txn-already-in-mempool"), ErrTxAlreadyKnown},
		{wrap("Transaction already in block chain"), ErrTxAlreadyKnown},
		{wrap("txn-mempool-conflict"), ErrTxConflict},
		{wrap("insufficient fee, rejecting replacement 1b21; new feerate 0.00001 <= old feerate 0.00002"), ErrTxConflict},
		{wrap("bad-txns-inputs-missingorspent"), ErrMissingInputs},
		{wrap("min relay fee not met, 100 < 141"), ErrFeeTooLow},
		{wrap("mempool min fee not met, 100 < 2000"), ErrFeeTooLow},
		{wrap("dust"), ErrNonStandard},
		{wrap("non-mandatory-script-verify-flag (Signature must be zero for failed CHECK(MULTI)SIG operation)"), ErrNonStandard},
		{wrap("something new"), nil},
	} {
		msg := cleanRejectMessage(tc.msg)
		if strings.Contains(msg, rawTx) || strings.Contains(msg, "network rules") || strings.Contains(msg, "\n") {
			t.Errorf("cleanRejectMessage(%q) = %q: preamble, raw tx or newline left", tc.msg, msg)
		}
		if got := BroadcastReason(msg); got != tc.want {
			t.Errorf("BroadcastReason(%q) = %v, want %v", msg, got, tc.want)
		}
	}
	if n := len(cleanRejectMessage(strings.Repeat("x", 5000))); n > 310 {
		t.Errorf("cleanRejectMessage does not bound the length: %d", n)
	}
}

func TestBroadcastAgainstFake(t *testing.T) {
	// A segwit transaction: its txid (what the server answers) is not the double SHA-256 of
	// its serialization (that is the wtxid, BIP-141).
	segwit := wire.NewMsgTx(2)
	segwit.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 1}, Witness: wire.TxWitness{{1, 2, 3}}})
	segwit.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	var rawBuf bytes.Buffer
	if err := segwit.Serialize(&rawBuf); err != nil {
		t.Fatal(err)
	}
	raw := rawBuf.Bytes()
	if txidOf(raw) == chainhash.DoubleHashH(raw).String() {
		t.Fatal("test transaction has no witness")
	}
	if _, err := (&Client{}).BroadcastTransaction(context.Background(), []byte{0x02, 0, 0}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("broadcast of bytes that are no transaction = %v, want ErrBadRequest before anything is sent", err)
	}
	addr := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
		for i := 0; ; i++ {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var q rawReq
			json.Unmarshal(line, &q)
			switch i {
			case 0:
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":1,"message":"the transaction was rejected by network rules.\n\nmin relay fee not met\n[02000000]"}}`+"\n", q.ID)
			case 1:
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":"please upgrade your client"}`+"\n", q.ID)
			default:
				var p []string
				json.Unmarshal(q.Params, &p)
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":%q}`+"\n", q.ID, txidOf(raw))
			}
		}
	})
	c, err := Dial(context.Background(), "tcp://"+addr, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, err = c.BroadcastTransaction(ctx, raw)
	var be *BroadcastError
	if !errors.As(err, &be) || !errors.Is(err, ErrFeeTooLow) || !errors.Is(err, ErrBroadcastRejected) || !errors.Is(err, ErrBadRequest) || be.Message != "min relay fee not met" {
		t.Fatalf("rejected broadcast: %v", err)
	}
	if _, err := c.BroadcastTransaction(ctx, raw); err == nil || !strings.Contains(err.Error(), "please upgrade") {
		t.Fatalf("answer that is not the txid: %v", err)
	}
	if got, err := c.BroadcastTransaction(ctx, raw); err != nil || got.String() != txidOf(raw) {
		t.Fatalf("broadcast = %v, %v", got, err)
	}
}

func txidOf(raw []byte) string {
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		panic(err)
	}
	return tx.TxHash().String()
}

func TestFeeRateFromServer(t *testing.T) {
	for _, tc := range []struct {
		raw       string
		want      FeeRate
		estimated bool
		reason    error
	}{
		{`0.00001`, 1, true, nil},
		{`0.0002`, 20, true, nil},
		{`0.000001`, 1, true, nil}, // below the minimum relay feerate: raised
		{`-1`, DefaultFallbackFeeRate, false, ErrNoFeeEstimate},
		{`-2`, DefaultFallbackFeeRate, false, ErrImplausibleFee},
		{`"0.1"`, DefaultFallbackFeeRate, false, ErrImplausibleFee},
		{`null`, DefaultFallbackFeeRate, false, ErrImplausibleFee},
		{`0.5`, DefaultFallbackFeeRate, false, ErrImplausibleFee}, // 50,000 sat/vB: above the ceiling
		{`{"code":2}`, DefaultFallbackFeeRate, false, ErrDaemonError},
	} {
		addr := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var q rawReq
			json.Unmarshal(line, &q)
			if strings.HasPrefix(tc.raw, "{") {
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":2,"message":"daemon error"}}`+"\n", q.ID)
				return
			}
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":%s}`+"\n", q.ID, tc.raw)
			r.ReadBytes('\n')
		})
		c, err := Dial(context.Background(), "tcp://"+addr, quiet())
		if err != nil {
			t.Fatal(err)
		}
		est := c.EstimateFee(context.Background(), 6, 0, 0)
		c.Close()
		if est.Rate != tc.want || est.Estimated != tc.estimated || !errors.Is(est.Reason, tc.reason) || (tc.reason == nil) != (est.Reason == nil) {
			t.Errorf("estimatefee answered %s: got %+v, want rate %v estimated %v reason %v", tc.raw, est, tc.want, tc.estimated, tc.reason)
		}
	}
	c := &Client{}
	if est := c.EstimateFee(context.Background(), 0, 7, 0); est.Rate != 7 || est.Estimated || !errors.Is(est.Reason, ErrImplausibleFee) {
		t.Errorf("target 0 blocks: %+v", est)
	}
}

func TestProtocolVersionNegotiation(t *testing.T) {
	for _, tc := range []struct {
		v, lo, hi string
		ok        bool
	}{
		{"1.4", "1.4", "1.6", true},
		{"1.4.3", "1.4", "1.6", true},
		{"1.6", "1.4", "1.6", true},
		{"1.6.1", "1.4", "1.6", true},
		{"1.5", "1.4", "1.6", true},
		{"1.3", "1.4", "1.6", false},
		{"1.7", "1.4", "1.6", false},
		{"2.0", "1.4", "1.6", false},
		{"", "1.4", "1.6", false},
		{"1..4", "1.4", "1.6", false},
		{"1.4a", "1.4", "1.6", false},
		{"-1.4", "1.4", "1.6", false},
	} {
		if got := versionInRange(tc.v, tc.lo, tc.hi); got != tc.ok {
			t.Errorf("versionInRange(%q, %s, %s) = %v, want %v", tc.v, tc.lo, tc.hi, got, tc.ok)
		}
	}
	for _, v := range []string{"1.2", "1.7", "banana"} {
		addr := fakeMany(t, v, nil, func(r *bufio.Reader, w net.Conn) { r.ReadBytes('\n') })
		c, err := Dial(context.Background(), "tcp://"+addr, quiet())
		if err == nil {
			c.Close()
			t.Fatalf("server.version %q accepted", v)
		}
		if !errors.Is(err, ErrProtocolVersion) {
			t.Fatalf("server.version %q: %v, want ErrProtocolVersion", v, err)
		}
	}
	addr := fakeMany(t, "1.4.3", nil, func(r *bufio.Reader, w net.Conn) { r.ReadBytes('\n') })
	c, err := Dial(context.Background(), "tcp://"+addr, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ProtocolVersion() != "1.4.3" || c.Latency() <= 0 {
		t.Fatalf("protocol %q latency %v", c.ProtocolVersion(), c.Latency())
	}
}

func TestRequestTooLargeIsNotSent(t *testing.T) {
	got := make(chan string, 4)
	addr := fakeMany(t, "1.4", nil, answerNull(func(method string) { got <- method }))
	o := quiet()
	o.MaxRequestSize = 200
	c, err := Dial(context.Background(), "tcp://"+addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Call(context.Background(), "big", []any{strings.Repeat("a", 300)}, nil)
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("err = %v, want ErrRequestTooLarge", err)
	}
	if err := c.Call(context.Background(), "small", nil, nil); err != nil {
		t.Fatalf("the connection should still work: %v", err)
	}
	if m := <-got; m != "small" {
		t.Fatalf("server received %q first; the oversized request was sent", m)
	}
}

func TestUnresponsiveServerIsLeft(t *testing.T) {
	addr := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
		for {
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
		}
	})
	o := quiet()
	o.RequestTimeout = 50 * time.Millisecond
	o.MaxConsecutiveTimeouts = 2
	c, err := Dial(context.Background(), "tcp://"+addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Call(context.Background(), "a", nil, nil)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first: %v, want ErrTimeout", err)
	}
	select {
	case <-c.Done():
		t.Fatal("closed after one timeout")
	default:
	}
	c.Call(context.Background(), "b", nil, nil)
	<-c.Done()
	if !errors.Is(c.Err(), ErrUnresponsive) {
		t.Fatalf("Err() = %v, want ErrUnresponsive", c.Err())
	}
}

func TestSlowButTalkingServerIsKept(t *testing.T) {
	// Notifications keep arriving while requests time out: the server is alive, just slow.
	addr := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
		for {
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
			fmt.Fprintln(w, `{"jsonrpc":"2.0","method":"blockchain.headers.subscribe","params":[{"hex":"00","height":1}]}`)
		}
	})
	o := quiet()
	o.RequestTimeout = 100 * time.Millisecond
	o.MaxConsecutiveTimeouts = 1
	c, err := Dial(context.Background(), "tcp://"+addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if err := c.Call(context.Background(), "slow", nil, nil); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	}
	if c.Err() != nil {
		t.Fatalf("closed a server that keeps talking: %v", c.Err())
	}
}

// selfSigned makes a TLS certificate for 127.0.0.1; with ca it is also usable as a root.
func selfSigned(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert
}

func TestTLSTrustOrder(t *testing.T) {
	tc1, x1 := selfSigned(t)
	tc2, _ := selfSigned(t)
	addr := fakeMany(t, "1.4", &tc1, echoUntilEOF)
	fp1 := Fingerprint(tc1.Certificate[0])
	fp2 := Fingerprint(tc2.Certificate[0])
	url := "ssl://" + addr
	dial := func(o TLSOptions) error {
		opts := quiet()
		opts.TLS = o
		c, err := Dial(context.Background(), url, opts)
		if err == nil {
			var out []string
			err = c.Call(context.Background(), "echo", []any{"x"}, &out)
			c.Close()
		}
		return err
	}

	// A CA-verified certificate is accepted and not pinned.
	roots := x509.NewCertPool()
	roots.AddCert(x1)
	mem := &MemoryPinStore{}
	if err := dial(TLSOptions{RootCAs: roots, Pins: mem}); err != nil {
		t.Fatalf("CA-verified: %v", err)
	}
	if p, _ := mem.Pin(addr); p != "" {
		t.Fatalf("CA-verified certificate was pinned: %s", p)
	}
	// Not verified, no store: refused.
	if err := dial(TLSOptions{}); !errors.Is(err, ErrUntrustedCertificate) {
		t.Fatalf("no pin, no TOFU: %v, want ErrUntrustedCertificate", err)
	}
	// Trust on first use into a file, then the pin holds.
	dir := t.TempDir()
	fs, err := NewFilePinStore(filepath.Join(dir, "pins.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(TLSOptions{Pins: fs}); err != nil {
		t.Fatalf("TOFU: %v", err)
	}
	fs2, err := NewFilePinStore(filepath.Join(dir, "pins.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := fs2.Pin(addr); p != fp1 {
		t.Fatalf("pin file has %q, want %q", p, fp1)
	}
	if err := dial(TLSOptions{Pins: fs2}); err != nil {
		t.Fatalf("pinned: %v", err)
	}
	// A pin wins over a CA chain: another certificate's pin refuses this one.
	fs2.SetPin(addr, fp2)
	err = dial(TLSOptions{Pins: fs2, RootCAs: roots})
	var pm *PinMismatchError
	if !errors.As(err, &pm) || pm.Pinned != fp2 || pm.Got != fp1 || pm.Server != addr || pm.Configured {
		t.Fatalf("stored pin mismatch: %v", err)
	}
	// Configured fingerprints win over the store, both ways.
	if err := dial(TLSOptions{Pins: fs2, Fingerprints: map[string]string{addr: fp1}}); err != nil {
		t.Fatalf("configured matching pin: %v", err)
	}
	err = dial(TLSOptions{Pins: mem, Fingerprints: map[string]string{addr: fp2}})
	if !errors.As(err, &pm) || !pm.Configured || !strings.Contains(err.Error(), fp1) || !strings.Contains(err.Error(), fp2) {
		t.Fatalf("configured pin mismatch: %v", err)
	}
	if p, _ := mem.Pin(addr); p != "" {
		t.Fatal("a refused connection was pinned")
	}
	if err := dial(TLSOptions{Fingerprints: map[string]string{addr: "nothex"}}); !errors.Is(err, ErrBadFingerprint) {
		t.Fatalf("bad configured fingerprint: %v", err)
	}
}

func TestFilePinStore(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pins.json")
	s, err := NewFilePinStore(p)
	if err != nil {
		t.Fatal(err)
	}
	if fp, err := s.Pin("a:1"); fp != "" || err != nil {
		t.Fatalf("empty store: %q %v", fp, err)
	}
	fp := strings.Repeat("0f", 32)
	if err := s.SetPin("a:1", fp); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("pin file mode %v", st.Mode())
	}
	for _, bad := range []string{"{", `{"a:1":"xyz"}`, `["x"]`} {
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := NewFilePinStore(p); !errors.Is(err, ErrPinStore) {
			t.Errorf("pin file %q: %v, want ErrPinStore", bad, err)
		}
		if _, err := s.Pin("a:1"); !errors.Is(err, ErrPinStore) {
			t.Errorf("Pin with file %q: %v, want ErrPinStore", bad, err)
		}
		if err := s.SetPin("a:1", fp); !errors.Is(err, ErrPinStore) {
			t.Errorf("SetPin over file %q: %v, want ErrPinStore (never overwrite what we cannot read)", bad, err)
		}
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.ToUpper(want), strings.Repeat("AB:", 31) + "AB", " " + want + " "} {
		if got, err := NormalizeFingerprint(in); err != nil || got != want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ab", strings.Repeat("ab", 31), strings.Repeat("zz", 32), strings.Repeat("ab", 33)} {
		if _, err := NormalizeFingerprint(in); !errors.Is(err, ErrBadFingerprint) {
			t.Errorf("NormalizeFingerprint(%q) = %v, want ErrBadFingerprint", in, err)
		}
	}
}

func TestNewPoolValidation(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		want error
	}{
		{nil, ErrBadURL},
		{[]string{"tcp://a:1", "tcp://a:1"}, ErrBadURL},
		{[]string{"tcp://a:1", "tls://a:1", "ssl://a:1"}, ErrBadURL}, // tls:// is ssl://
		{[]string{"http://a:1"}, ErrUnsupportedScheme},
		{[]string{"tcp://a:1", "ssl://a:1"}, nil},
	} {
		_, err := NewPool(tc.urls, PoolOptions{})
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("NewPool(%v) = %v, want %v", tc.urls, err, tc.want)
		}
	}
}

func TestPoolBackoffBounds(t *testing.T) {
	p, err := NewPool([]string{"tcp://a:1"}, PoolOptions{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for level, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.backoff(level)
			if d < base/2 || d > base+base/2 {
				t.Fatalf("backoff(%d) = %v, want within ±50%% of %v", level, d, base)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("backoff(%d) has no jitter", level)
		}
	}
}

func TestPoolFailsOverAndRecordsHealth(t *testing.T) {
	good := fakeMany(t, "1.4", nil, echoUntilEOF)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	oldVersion := fakeMany(t, "1.0", nil, nil)
	p, err := NewPool([]string{"tcp://" + dead, "tcp://" + oldVersion, "tcp://" + good}, PoolOptions{Options: quiet(), BackoffMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := p.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server() != "tcp://"+good {
		t.Fatalf("connected to %s", c.Server())
	}
	h := p.Health()
	if h[0].FailuresInRow != 1 || h[0].RetryAfter.IsZero() || !strings.Contains(h[0].LastError, "refused") {
		t.Fatalf("dead server health: %+v", h[0])
	}
	if !strings.Contains(h[1].LastError, "unsupported protocol version") || h[1].Connected {
		t.Fatalf("old-version server health: %+v", h[1])
	}
	if !h[2].Connected || h[2].Protocol != "1.4" || h[2].Software != "FakeX 0.1" || h[2].Connects != 1 || h[2].Failures != 0 {
		t.Fatalf("good server health: %+v", h[2])
	}
	// Closing by the owner is not the server's fault.
	c.Close()
	if h := p.Health()[2]; h.Connected || h.Failures != 0 {
		t.Fatalf("after Close: %+v", h)
	}
	// Everything backing off (an hour) and the good one closed: Connect still prefers the one
	// with no failures, which is due.
	c, err = p.Connect(ctx)
	if err != nil || c.Server() != "tcp://"+good {
		t.Fatalf("reconnect: %v %v", c, err)
	}
	c.Close()

	// All down: Connect waits out the backoff until ctx ends and names every server.
	p2, _ := NewPool([]string{"tcp://" + dead}, PoolOptions{Options: quiet(), BackoffMin: time.Hour})
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = p2.Connect(cctx)
	if !errors.Is(err, ErrNoServers) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("no server: %v", err)
	}
}

func TestPoolCountsDropsAndSwitches(t *testing.T) {
	// The server hands over its first connection once it serves it: Connect may return (the
	// handshake answered) before the handler runs, so the test waits for it rather than read a
	// variable the handler may not have set yet.
	conns := make(chan net.Conn, 1)
	a := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
		select {
		case conns <- w:
		default:
		}
		echoUntilEOF(r, w)
	})
	b := fakeMany(t, "1.4", nil, echoUntilEOF)
	p, err := NewPool([]string{"tcp://" + a, "tcp://" + b}, PoolOptions{Options: quiet(), BackoffMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Connect(context.Background())
	if err != nil || c.Server() != "tcp://"+a {
		t.Fatalf("first connect: %v", err)
	}
	(<-conns).Close() // the server drops us
	<-c.Done()
	c.Close()
	h := p.Health()
	if h[0].Connected || h[0].Failures != 1 || !strings.Contains(h[0].LastError, "closed") {
		t.Fatalf("dropped server health: %+v", h[0])
	}
	c, err = p.Connect(context.Background())
	if err != nil || c.Server() != "tcp://"+b {
		t.Fatalf("failover: %v %v", c, err)
	}
	defer c.Close()
	var out []string
	if err := c.Call(context.Background(), "echo", []any{"after"}, &out); err != nil || out[0] != "after" {
		t.Fatalf("call after failover: %v %v", out, err)
	}
}

// FuzzClientFraming feeds arbitrary server bytes (after a valid handshake) through a real
// Client and checks it never panics, answers or fails every pending call, and ends with one of
// the documented errors.
func FuzzClientFraming(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":2,"result":"ok"}` + "\n",
		`{"jsonrpc":"2.0","method":"blockchain.headers.subscribe","params":[{"hex":"00","height":1}]}` + "\n" + `{"jsonrpc":"2.0","id":2,"result":1}` + "\n",
		`[{"jsonrpc":"2.0","id":2,"result":1},{"jsonrpc":"2.0","id":99,"result":1}]` + "\n",
		"\r\n  \n" + `{"id":2,"error":{"code":10001,"message":"history too large"}}` + "\r\n",
		`{"id":2,"result":` + strings.Repeat("[", 100) + "\n",
		"no newline at all",
		strings.Repeat("x", 3000) + "\n",
		"\x00\xff\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go func() {
			r := bufio.NewReader(server)
			line, err := r.ReadBytes('\n')
			if err != nil {
				server.Close()
				return
			}
			var q rawReq
			json.Unmarshal(line, &q)
			fmt.Fprintf(server, `{"jsonrpc":"2.0","id":%d,"result":["Fuzz","1.4"]}`+"\n", q.ID)
			r.ReadBytes('\n') // the call
			server.Write(data)
			server.Close()
		}()
		o := quiet()
		o.MaxMessageSize = 2048
		c := newClient(client, "tcp://fuzz:1", withDefaults(o))
		var ver []string
		if err := c.call(context.Background(), "server.version", []any{"f", []string{"1.4", "1.6"}}, &ver); err != nil {
			c.Close()
			t.Fatalf("handshake: %v", err)
		}
		var res any
		err := c.Call(context.Background(), "m", nil, &res)
		var se *ServerError
		if err != nil && !errors.Is(err, ErrClosed) && !errors.As(err, &se) && !strings.Contains(err.Error(), "decode result") {
			t.Fatalf("call error %v is none of the documented ones", err)
		}
		<-c.Done()
		end := c.Err()
		if !errors.Is(end, ErrServerClosed) && !errors.Is(end, ErrMalformedMessage) && !errors.Is(end, ErrMessageTooLarge) && !errors.Is(end, ErrClosed) {
			t.Fatalf("connection ended with %v", end)
		}
		for range c.Notifications() {
		}
		c.Close()
	})
}

func withDefaults(o Options) Options { o.setDefaults(); return o }

func TestKeepalive(t *testing.T) {
	pings := make(chan struct{}, 100)
	answering := fakeMany(t, "1.4", nil, answerNull(func(method string) {
		if method == "server.ping" {
			pings <- struct{}{}
		}
	}))
	o := Options{PingInterval: 20 * time.Millisecond, RequestTimeout: 5 * time.Second}
	c, err := Dial(context.Background(), "tcp://"+answering, o)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		<-pings
	}
	if c.Err() != nil {
		t.Fatalf("answered pings ended the connection: %v", c.Err())
	}
	c.Close()

	silent := fakeMany(t, "1.4", nil, func(r *bufio.Reader, w net.Conn) {
		for {
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
		}
	})
	o = Options{PingInterval: 20 * time.Millisecond, RequestTimeout: 50 * time.Millisecond, MaxConsecutiveTimeouts: -1}
	// The dial (handshake) gets its own deadline, so that only the pings run on the 50 ms
	// request timeout: a loaded machine must not fail the handshake.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	c, err = Dial(dctx, "tcp://"+silent, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-c.Done()
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "keepalive server.ping") || !errors.Is(err, ErrTimeout) {
		t.Fatalf("unanswered ping: %v", err)
	}
}
