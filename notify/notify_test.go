package notify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/relaypool"
)

// deadRelay returns a ws:// URL on loopback where nothing listens (a relay that is down).
func deadRelay(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ws://" + addr
}

// TestRelaysDown: with every relay down, SendWait makes the configured attempts and reports
// ErrNotDelivered; Send queues at most the queue's size and then refuses with ErrQueueFull;
// nothing of the text reaches the log.
func TestRelaysDown(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := relaypool.New([]string{deadRelay(t)}, relaypool.Options{PublishTimeout: time.Second, PublishRetry: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	sk := nostr.GeneratePrivateKey()
	_, op := keyPair(t)

	d, err := notify.New(sk, []string{op}, pool, log, notify.WithLookupWait(10*time.Millisecond),
		notify.WithRetry(2, 10*time.Millisecond, 2*time.Second), notify.WithQueueSize(1))
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.SendWait(context.Background(), "canary-9d2e: proposal p7 abandoned")
	if !errors.Is(err, notify.ErrNotDelivered) {
		t.Fatalf("SendWait with the relays down: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("deliveries %+v, want the operator's and our own", res)
	}
	for _, r := range res {
		if r.Attempts != 2 || !errors.Is(r.Err, notify.ErrNotDelivered) {
			t.Errorf("delivery to %s: %d attempts, err %v; want 2 attempts, ErrNotDelivered", r.Recipient, r.Attempts, r.Err)
		}
	}

	d.Close()

	// The delivery goroutine holds at most one message (here waiting an hour to retry it) and
	// the queue one more.
	d, err = notify.New(sk, []string{op}, pool, log, notify.WithLookupWait(10*time.Millisecond),
		notify.WithRetry(2, time.Hour, 2*time.Second), notify.WithQueueSize(1))
	if err != nil {
		t.Fatal(err)
	}
	var full int
	for range 3 {
		if err := d.Send(context.Background(), "canary-9d2e queued"); errors.Is(err, notify.ErrQueueFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if full == 0 {
		t.Error("3 messages queued with a queue of 1 and a busy delivery goroutine")
	}
	d.Close()
	if err := d.Send(context.Background(), "late"); !errors.Is(err, notify.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := d.SendWait(context.Background(), "late"); !errors.Is(err, notify.ErrClosed) {
		t.Errorf("SendWait after Close: %v", err)
	}
	out := logs.String()
	if strings.Contains(out, "canary-9d2e") {
		t.Errorf("the text reached the log:\n%s", out)
	}
	if !strings.Contains(out, "direct message not delivered") {
		t.Errorf("the failure was not logged:\n%s", out)
	}
}

func TestNewRefuses(t *testing.T) {
	pool, err := relaypool.New([]string{deadRelay(t)}, relaypool.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sk, pub := keyPair(t)
	_, op := keyPair(t)
	cases := []struct {
		name string
		sk   string
		to   []string
		want error
	}{
		{"bad sender key", "xyz", []string{op}, notify.ErrBadSenderKey},
		{"zero sender key", strings.Repeat("0", 64), []string{op}, notify.ErrBadSenderKey},
		{"no recipients", sk, nil, notify.ErrNoRecipients},
		{"only ourselves", sk, []string{pub}, notify.ErrNoRecipients},
		{"bad npub", sk, []string{op, "npub1zzz"}, notify.ErrBadRecipient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := notify.New(c.sk, c.to, pool, nil)
			if err == nil {
				d.Close()
			}
			if !errors.Is(err, c.want) {
				t.Errorf("New: %v, want %v", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), sk) {
				t.Errorf("the error shows the secret key")
			}
		})
	}
}
