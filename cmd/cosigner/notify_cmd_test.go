package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/relaypool"
)

func TestConfigNotifyNPub(t *testing.T) {
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	npub, _ := nip19.EncodePublicKey(pk)
	t.Setenv("COSIGNER_NOTIFY_NPUB", " "+npub+", "+strings.ToUpper(pk))
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.NotifyRecipients) != 1 || c.NotifyRecipients[0] != pk {
		t.Fatalf("NotifyRecipients = %v, want [%s]", c.NotifyRecipients, pk)
	}
	t.Setenv("COSIGNER_NOTIFY_NPUB", "")
	if c, err = loadConfig(); err != nil || c.NotifyRecipients != nil {
		t.Fatalf("empty COSIGNER_NOTIFY_NPUB: %v, %v (want off)", c.NotifyRecipients, err)
	}
	if err := runCommand(context.Background(), []string{"notify-test"}, io.Discard); err == nil || !strings.Contains(err.Error(), "COSIGNER_NOTIFY_NPUB") {
		t.Fatalf("notify-test without COSIGNER_NOTIFY_NPUB: %v", err)
	}
}

// TestNotifyTestCommand runs `cosigner notify-test` against the devnet's relays and opens the
// operator's gift wrap with the operator's key.
func TestNotifyTestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), InitialBlocks: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	opSK := nostr.GeneratePrivateKey()
	op, _ := nostr.GetPublicKey(opSK)
	npub, _ := nip19.EncodePublicKey(op)
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", strings.Join(net.RelayURLs(), ","))
	t.Setenv("COSIGNER_NOTIFY_NPUB", npub)
	t.Setenv("COSIGNER_LOG_LEVEL", "error")
	var out bytes.Buffer
	if err := runCommand(ctx, []string{"init"}, &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runCommand(ctx, []string{"notify-test", "--text", "hello operator 42", "--timeout", "45s"}, &out); err != nil {
		t.Fatalf("notify-test: %v\n%s", err, out.String())
	}
	t.Logf("notify-test printed:\n%s", out.String())
	if got := out.String(); strings.Count(got, ": delivered") != 2 || strings.Count(got, ": ok\n") != 6 || !strings.Contains(got, npub) || !strings.Contains(got, "own copy") || strings.Contains(got, "hello operator") {
		t.Fatalf("notify-test printed:\n%s", got)
	}

	pool, err := relaypool.New(net.RelayURLs(), relaypool.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sub, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	for ev := range pool.Subscribe(sub, nostr.Filter{Kinds: []int{1059}, Tags: nostr.TagMap{"p": {op}}}) {
		rumor, err := notify.Unwrap(*ev.Event, opSK)
		if err != nil {
			t.Fatalf("the operator's wrap: %v", err)
		}
		if rumor.Content != "hello operator 42" {
			t.Fatalf("rumor content %q", rumor.Content)
		}
		return
	}
	t.Fatal("no gift wrap for the operator on the relays")
}
