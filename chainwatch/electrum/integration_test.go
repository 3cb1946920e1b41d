package electrum_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/devnet"
)

// startDevnet starts btcd + ElectrumX (no relays) for this package's integration tests.
func startDevnet(t *testing.T) *devnet.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local test network (skipped under -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), RelayPorts: []int{}})
	if errors.Is(err, devnet.ErrToolMissing) {
		t.Fatalf("devnet.Start: %v (the local test network needs its tools: run scripts/install-tools.sh)", err)
	}
	if err != nil {
		t.Fatalf("devnet.Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// newCutter puts target (host:port) behind a devnet.Proxy, closed when the test ends: a real
// server behind a wire that breaks (Cut).
func newCutter(t *testing.T, target string) *devnet.Proxy {
	t.Helper()
	p, err := devnet.NewProxy(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// deadURL is a loopback port where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "tcp://" + addr
}

// silentURL accepts connections and never answers.
func silentURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
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
	return "tcp://" + ln.Addr().String()
}

func opts() electrum.Options {
	return electrum.Options{ClientName: "electrum-it", RequestTimeout: 20 * time.Second, PingInterval: -1}
}

func TestElectrumXOverTCPAndTLS(t *testing.T) {
	n := startDevnet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	tip := func(t *testing.T, c *electrum.Client) int32 {
		t.Helper()
		var h struct {
			Height int32  `json:"height"`
			Hex    string `json:"hex"`
		}
		if err := c.Call(ctx, "blockchain.headers.subscribe", nil, &h); err != nil {
			t.Fatalf("headers.subscribe over %s: %v", c.Server(), err)
		}
		if len(h.Hex) != 160 || h.Height < 1 {
			t.Fatalf("tip = %+v", h)
		}
		return h.Height
	}

	t.Run("tcp negotiates a version in 1.4–1.6", func(t *testing.T) {
		c, err := electrum.Dial(ctx, n.ElectrumURL(), opts())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !strings.HasPrefix(c.ServerSoftware, "ElectrumX") || !strings.HasPrefix(c.ProtocolVersion(), "1.") {
			t.Fatalf("server.version = %q %q", c.ServerSoftware, c.ProtocolVersion())
		}
		if c.Latency() <= 0 {
			t.Fatalf("latency %v not measured", c.Latency())
		}
		tip(t, c)
	})

	t.Run("tls pins on first use and keeps the pin", func(t *testing.T) {
		pins := &electrum.MemoryPinStore{}
		o := opts()
		o.TLS.Pins = pins
		c, err := electrum.Dial(ctx, n.ElectrumTLSURL(), o)
		if err != nil {
			t.Fatal(err)
		}
		tip(t, c)
		c.Close()
		server := strings.TrimPrefix(n.ElectrumTLSURL(), "ssl://")
		got, _ := pins.Pin(server)
		if got != n.ElectrumTLSFingerprint() {
			t.Fatalf("pinned %q, want the server's %q", got, n.ElectrumTLSFingerprint())
		}
		c, err = electrum.Dial(ctx, n.ElectrumTLSURL(), o)
		if err != nil {
			t.Fatalf("second dial with the pin: %v", err)
		}
		c.Close()
	})

	t.Run("tls pin mismatch is refused naming both fingerprints", func(t *testing.T) {
		server := strings.TrimPrefix(n.ElectrumTLSURL(), "ssl://")
		wrong := strings.Repeat("ab", 32)
		pins := &electrum.MemoryPinStore{}
		pins.SetPin(server, wrong)
		for name, o := range map[string]electrum.TLSOptions{
			"stored":     {Pins: pins},
			"configured": {Fingerprints: map[string]string{server: wrong}, Pins: &electrum.MemoryPinStore{}},
		} {
			eo := opts()
			eo.TLS = o
			c, err := electrum.Dial(ctx, n.ElectrumTLSURL(), eo)
			if err == nil {
				c.Close()
				t.Fatalf("%s: a wrong pin was accepted", name)
			}
			var pm *electrum.PinMismatchError
			if !errors.As(err, &pm) || !errors.Is(err, electrum.ErrCertificateMismatch) {
				t.Fatalf("%s: err = %v, want *PinMismatchError", name, err)
			}
			msg := err.Error()
			if pm.Server != server || !strings.Contains(msg, server) || !strings.Contains(msg, wrong) || !strings.Contains(msg, n.ElectrumTLSFingerprint()) {
				t.Fatalf("%s: error does not name the server and both fingerprints: %v", name, err)
			}
		}
		if p, _ := pins.Pin(server); p != wrong {
			t.Fatalf("a refused connection changed the stored pin to %q", p)
		}
	})

	t.Run("tls self-signed without a pin or trust on first use is refused", func(t *testing.T) {
		c, err := electrum.Dial(ctx, n.ElectrumTLSURL(), opts())
		if err == nil {
			c.Close()
			t.Fatal("self-signed certificate accepted without a pin")
		}
		if !errors.Is(err, electrum.ErrUntrustedCertificate) {
			t.Fatalf("err = %v, want ErrUntrustedCertificate", err)
		}
	})

	t.Run("tls configured fingerprint", func(t *testing.T) {
		server := strings.TrimPrefix(n.ElectrumTLSURL(), "ssl://")
		o := opts()
		o.TLS.Fingerprints = map[string]string{server: strings.ToUpper(n.ElectrumTLSFingerprint())}
		c, err := electrum.Dial(ctx, n.ElectrumTLSURL(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tip(t, c)
	})

	t.Run("pool fails over from dead and silent servers, then on a cut", func(t *testing.T) {
		cut := newCutter(t, n.ElectrumAddr())
		dead, silent := deadURL(t), silentURL(t)
		o := opts()
		o.TLS.Pins = &electrum.MemoryPinStore{}
		p, err := electrum.NewPool([]string{dead, silent, cut.URL(), n.ElectrumTLSURL()}, electrum.PoolOptions{
			Options: o, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, DialTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Server() != cut.URL() {
			t.Fatalf("connected to %s, want the first live server %s", c.Server(), cut.URL())
		}
		tip(t, c)
		h := p.Health()
		if h[0].Failures == 0 || h[0].LastError == "" || h[1].Failures == 0 || !h[2].Connected || h[2].Protocol == "" || h[2].Latency <= 0 {
			t.Fatalf("health after failover: %+v", h)
		}
		if !strings.Contains(h[1].LastError, "deadline exceeded") {
			t.Fatalf("silent server's last error = %q, want a timeout", h[1].LastError)
		}

		cut.Close() // the server is gone for good
		<-c.Done()
		if !errors.Is(c.Err(), electrum.ErrServerClosed) && !strings.Contains(c.Err().Error(), "read") {
			t.Fatalf("after the cut: %v", c.Err())
		}
		c.Close()
		c2, err := p.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		h = p.Health()
		if h[2].Connected || h[2].Failures < 1 || !h[3].Connected || h[3].Protocol == "" {
			t.Fatalf("health after the second failover: %+v", h)
		}
		// Subscriptions are per connection: the new one works on its own.
		tip(t, c2)
		if c2.Server() != n.ElectrumTLSURL() {
			t.Fatalf("failed over to %s, want %s", c2.Server(), n.ElectrumTLSURL())
		}
	})

	t.Run("reconnect after the connection is cut", func(t *testing.T) {
		cut := newCutter(t, n.ElectrumAddr())
		p, err := electrum.NewPool([]string{cut.URL()}, electrum.PoolOptions{Options: opts(), BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var before string
		if err := c.Call(ctx, "blockchain.scripthash.subscribe", []any{strings.Repeat("00", 32)}, &before); err != nil {
			t.Fatal(err)
		}
		cut.Cut()
		<-c.Done()
		c.Close()
		c, err = p.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tip(t, c)
		if h := p.Health()[0]; h.Connects != 2 || h.Failures != 1 || !h.Connected {
			t.Fatalf("health = %+v, want 2 connects and 1 failure", h)
		}
	})

	t.Run("estimatefee falls back on regtest", func(t *testing.T) {
		c, err := electrum.Dial(ctx, n.ElectrumURL(), opts())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		est := c.EstimateFee(ctx, 2, 0, 0)
		if est.Rate < electrum.MinFeeRate || est.Rate > electrum.DefaultMaxFeeRate {
			t.Fatalf("estimate %+v out of bounds", est)
		}
		if !est.Estimated && est.Reason == nil {
			t.Fatalf("fallback without a reason: %+v", est)
		}
		if !est.Estimated && est.Rate != electrum.DefaultFallbackFeeRate {
			t.Fatalf("fallback %v, want %v", est.Rate, electrum.DefaultFallbackFeeRate)
		}
		t.Logf("regtest estimatefee(2): %+v", est)
	})

	t.Run("broadcast reasons from the node", func(t *testing.T) {
		c, err := electrum.Dial(ctx, n.ElectrumURL(), opts())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		addr, err := btcutil.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{7}, 20), n.Params())
		if err != nil {
			t.Fatal(err)
		}
		txid, err := n.Fund(ctx, addr, 100_000)
		if err != nil {
			t.Fatal(err)
		}
		var rawHex string
		if err := c.Call(ctx, "blockchain.transaction.get", []any{txid.String()}, &rawHex); err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(rawHex)
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		ser := func(tx *wire.MsgTx) []byte {
			var b bytes.Buffer
			tx.Serialize(&b)
			return b.Bytes()
		}

		_, err = c.BroadcastTransaction(ctx, raw)
		t.Logf("re-broadcast: %v", err)
		if !errors.Is(err, electrum.ErrTxAlreadyKnown) || !errors.Is(err, electrum.ErrBroadcastRejected) {
			t.Fatalf("re-broadcast: %v, want ErrTxAlreadyKnown", err)
		}
		if strings.Contains(err.Error(), rawHex[:40]) {
			t.Fatalf("error carries the raw transaction: %v", err)
		}

		missing := tx.Copy()
		missing.TxIn[0].PreviousOutPoint.Hash[0] ^= 0xff
		_, err = c.BroadcastTransaction(ctx, ser(missing))
		t.Logf("unknown input: %v", err)
		if !errors.Is(err, electrum.ErrMissingInputs) {
			t.Fatalf("unknown input: %v, want ErrMissingInputs", err)
		}

		conflict := tx.Copy()
		conflict.TxOut[0].Value--
		_, err = c.BroadcastTransaction(ctx, ser(conflict))
		t.Logf("double spend: %v", err)
		var be *electrum.BroadcastError
		if !errors.As(err, &be) || be.Reason == nil {
			t.Fatalf("double spend of a mempool output: %v, want a classified *BroadcastError", err)
		}
		if !errors.Is(err, electrum.ErrTxConflict) {
			t.Fatalf("double spend of a mempool output: %v, want ErrTxConflict", err)
		}
	})
}
