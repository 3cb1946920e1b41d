// Command freshkeys publishes kind-24133 events from fresh Nostr keys to one relay on the
// loopback interface, for the flood test (e2e/flood). It is built without the race detector so
// that making 20,000 keys and signatures takes seconds, not the test's race-instrumented
// minutes.
//
// usage: freshkeys -relay ws://127.0.0.1:PORT -signer HEXPUBKEY -n 20000
//
// Each event is p-tagged to the signer and signed by a key made for it. One in ten carries a
// NIP-44 connect request with a wrong secret; the others carry content that is not NIP-44 (a
// remote signer must check the signature and try to decrypt to know). Events go over one
// WebSocket with up to -window of them awaiting the relay's OK (pipelined). It prints one JSON
// line: {"sent":N,"accepted":A,"seconds":S}, and exits 1 on an error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
)

func main() {
	relay := flag.String("relay", "", "relay URL on the loopback interface (ws://127.0.0.1:PORT)")
	signer := flag.String("signer", "", "the remote signer's pubkey, hex")
	n := flag.Int("n", 20000, "events to publish (at most 1,000,000)")
	window := flag.Int("window", 512, "events awaiting their OK at most")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*relay, *signer, *n, *window, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "freshkeys:", err)
		os.Exit(1)
	}
}

func run(relay, signer string, n, window int, timeout time.Duration) error {
	u, err := url.Parse(relay)
	if err != nil || u.Scheme != "ws" {
		return fmt.Errorf("-relay %q: want ws://127.0.0.1:PORT", relay)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-relay %q: only a relay on the loopback interface may be flooded", relay)
	}
	if n < 1 || n > 1_000_000 || window < 1 {
		return fmt.Errorf("-n must be 1..1000000 and -window positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, relay, nil)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	start := time.Now()

	events := make(chan []byte, 1024)
	var genErr atomic.Value
	var wg sync.WaitGroup
	var next atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				b, err := freshEvent(signer, int(i))
				if err != nil {
					genErr.Store(err)
					cancel()
					return
				}
				select {
				case events <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(events) }()

	slots := make(chan struct{}, window)
	var accepted, answered int64
	readDone := make(chan error, 1)
	go func() {
		for answered < int64(n) {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				readDone <- err
				return
			}
			if ok, isOK := nostr.ParseMessage(msg).(*nostr.OKEnvelope); isOK {
				if ok.OK {
					accepted++
				}
				answered++
				<-slots
			}
		}
		readDone <- nil
	}()
	sent := 0
	for b := range events {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("after %d events: %w", sent, ctx.Err())
		}
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			return fmt.Errorf("after %d events: %w", sent, err)
		}
		sent++
	}
	if err, _ := genErr.Load().(error); err != nil {
		return err
	}
	if err := <-readDone; err != nil {
		return fmt.Errorf("waiting for the relay's OKs: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"sent": sent, "accepted": accepted, "seconds": time.Since(start).Seconds()})
}

// freshEvent is the i-th event, ["EVENT", ev], from a new key.
func freshEvent(signer string, i int) ([]byte, error) {
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nil, err
	}
	var content string
	if i%10 == 0 {
		ck, err := nip44.GenerateConversationKey(signer, sk)
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(map[string]any{"id": strconv.Itoa(i), "method": "connect", "params": []string{signer, "wrong-secret-" + strconv.Itoa(i)}})
		if content, err = nip44.Encrypt(string(body), ck); err != nil {
			return nil, err
		}
	} else {
		junk := make([]byte, 96)
		_, _ = rand.Read(junk)
		content = base64.StdEncoding.EncodeToString(junk)
	}
	ev := nostr.Event{PubKey: pk, CreatedAt: nostr.Now(), Kind: 24133, Tags: nostr.Tags{{"p", signer}}, Content: content}
	if err := ev.Sign(sk); err != nil {
		return nil, err
	}
	return json.Marshal([]any{"EVENT", ev})
}
