package notify_test

// integration_test.go — DMs over the devnet's relays (npm @nostr-relay/core), read and
// unwrapped by nostr-tools (e2e/clients/nip17_read.mjs): the real client library must open
// what we send.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/relaypool"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// reader is a running nip17_read.mjs.
type reader struct {
	lines  chan readLine
	ready  chan struct{}
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has ended; err is then its exit error
	err    error
}

type readLine struct {
	Wrap struct {
		ID        string          `json:"id"`
		PubKey    string          `json:"pubkey"`
		CreatedAt nostr.Timestamp `json:"created_at"`
		Kind      int             `json:"kind"`
		Tags      nostr.Tags      `json:"tags"`
	} `json:"wrap"`
	Rumor       nostr.Event `json:"rumor"`
	RumorIDOK   bool        `json:"rumor_id_ok"`
	UnwrapError string      `json:"unwrap_error"`
}

// startReader runs nip17_read.mjs as the operator sk on relays and waits until it has
// subscribed (EOSE from every relay).
func startReader(t *testing.T, ctx context.Context, sk string, relays []string, extra ...string) *reader {
	t.Helper()
	root, err := devnet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not on PATH (run scripts/install-tools.sh): %v", err)
	}
	args := append([]string{filepath.Join(root, "e2e", "clients", "nip17_read.mjs"), "--sk", sk,
		"--relays", strings.Join(relays, ","), "--timeout", "30"}, extra...)
	cmd := exec.CommandContext(ctx, node, args...)
	r := &reader{lines: make(chan readLine, 16), ready: make(chan struct{}), stderr: &lockedBuffer{}, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			r.stderr.Write(append(sc.Bytes(), '\n'))
			if strings.Contains(sc.Text(), `"ready":true`) {
				once.Do(func() { close(r.ready) })
			}
		}
	}()
	go func() {
		defer pipes.Done()
		defer close(r.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l readLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("nip17_read.mjs printed %q: %v", sc.Text(), err)
				continue
			}
			r.lines <- l
		}
	}()
	go func() { pipes.Wait(); r.err = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
	})
	select {
	case <-r.ready:
	case <-r.done:
		t.Fatalf("nip17_read.mjs ended before subscribing: %v\n%s", r.err, r.stderr)
	case <-ctx.Done():
		t.Fatalf("nip17_read.mjs did not subscribe: %v\n%s", ctx.Err(), r.stderr)
	}
	return r
}

// next returns the reader's next message.
func (r *reader) next(t *testing.T) readLine {
	t.Helper()
	l, ok := <-r.lines
	if !ok {
		<-r.done
		t.Fatalf("nip17_read.mjs ended without a message: %v\n%s", r.err, r.stderr)
	}
	return l
}

func keyPair(t *testing.T) (string, string) {
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk
}

// checkDM checks what nostr-tools unwrapped: the rumor is the cosigner's kind 14 with text,
// p-tagged to the operators, unsigned, its id right; the wrap is p-tagged to the operator,
// signed by another key, created_at within the two days before sending.
func checkDM(t *testing.T, l readLine, cosigner, operator string, operators []string, text string, sent time.Time) {
	t.Helper()
	if l.UnwrapError != "" {
		t.Fatalf("nostr-tools could not unwrap: %s", l.UnwrapError)
	}
	r := l.Rumor
	if r.Kind != 14 || r.PubKey != cosigner || r.Content != text || r.Sig != "" || !l.RumorIDOK {
		t.Errorf("rumor: kind %d author %s content %q sig %q id ok %v; want kind 14 from %s, %q, unsigned", r.Kind, r.PubKey, r.Content, r.Sig, l.RumorIDOK, cosigner, text)
	}
	var ps []string
	for _, tag := range r.Tags.GetAll([]string{"p", ""}) {
		ps = append(ps, tag[1])
	}
	if !slices.Equal(ps, operators) {
		t.Errorf("rumor p tags %v, want %v", ps, operators)
	}
	if d := time.Unix(int64(r.CreatedAt), 0).Sub(sent.Truncate(time.Second)); d < 0 || d > time.Minute {
		t.Errorf("rumor created_at %d, sent at %d", r.CreatedAt, sent.Unix())
	}
	w := l.Wrap
	if w.Kind != 1059 || len(w.Tags) != 1 || w.Tags[0][1] != operator || w.PubKey == cosigner {
		t.Errorf("wrap: kind %d tags %v pubkey %s", w.Kind, w.Tags, w.PubKey)
	}
	if lo := sent.Add(-notify.TimestampWindow - time.Second).Unix(); int64(w.CreatedAt) < lo || int64(w.CreatedAt) > time.Now().Unix() {
		t.Errorf("wrap created_at %d not within the two days before %d", w.CreatedAt, sent.Unix())
	}
}

func TestDMOnDevnetRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), InitialBlocks: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	relays := net.RelayURLs()
	// The cosigner's relays are the first two; the third is only an operator's DM inbox.
	ours := relays[:2]
	pool, err := relaypool.New(ours, relaypool.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cosignerSK, cosigner := keyPair(t)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	t.Run("no DM relay list: our relays, to the operator and to ourselves", func(t *testing.T) {
		opSK, op := keyPair(t)
		op2SK, op2 := keyPair(t)
		d, err := notify.New(cosignerSK, []string{op, op2}, pool, log, notify.WithLookupWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r1 := startReader(t, ctx, opSK, ours[:1])
		r2 := startReader(t, ctx, op2SK, ours[1:])
		self := startReader(t, ctx, cosignerSK, ours)
		text := "notify-test: secret-ish text 7f3a — proposal p1 held"
		sent := time.Now()
		res, err := d.SendWait(ctx, text)
		if err != nil {
			t.Fatalf("SendWait: %v %+v", err, res)
		}
		if len(res) != 3 || !res[2].Self || res[0].Recipient != op || res[1].Recipient != op2 {
			t.Fatalf("deliveries %+v", res)
		}
		for _, r := range res {
			if n, _ := relaypool.Published(r.Relays); n == 0 || r.Err != nil {
				t.Errorf("%s: accepted by %d relays, err %v", r.Recipient, n, r.Err)
			}
		}
		checkDM(t, r1.next(t), cosigner, op, []string{op, op2}, text, sent)
		checkDM(t, r2.next(t), cosigner, op2, []string{op, op2}, text, sent)
		checkDM(t, self.next(t), cosigner, cosigner, []string{op, op2}, text, sent)
		if strings.Contains(logs.String(), "7f3a") {
			t.Errorf("the message text reached the log:\n%s", logs)
		}
		if !strings.Contains(logs.String(), "direct message delivered") {
			t.Errorf("no delivery logged:\n%s", logs)
		}
	})

	t.Run("kind 10050 DM relay list: the wrap goes to the operator's inbox relay", func(t *testing.T) {
		opSK, op := keyPair(t)
		inbox := relays[2]
		// The operator's client publishes its DM relay list (naming a relay we do not use) on
		// our relays, and reads its DMs only from that relay.
		r := startReader(t, ctx, opSK, []string{inbox}, "--inbox", inbox, "--inbox-on", strings.Join(ours, ","))
		if !strings.Contains(r.stderr.String(), "published_10050") {
			t.Fatalf("no kind 10050 published:\n%s", r.stderr)
		}
		d, err := notify.New(cosignerSK, []string{op}, pool, log, notify.WithLookupWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		text := "proposal p2 (sweep) confirmed in block 000000…"
		sent := time.Now()
		if err := d.Send(ctx, text); err != nil { // queued: delivered by the DM's goroutine
			t.Fatal(err)
		}
		checkDM(t, r.next(t), cosigner, op, []string{op}, text, sent)
		if !strings.Contains(logs.String(), "operator DM relays (kind 10050)") {
			t.Errorf("the kind 10050 list was not logged as seen:\n%s", logs)
		}
	})

	t.Run("a kind 10050 list published later is followed", func(t *testing.T) {
		opSK, op := keyPair(t)
		d, err := notify.New(cosignerSK, []string{op}, pool, log, notify.WithLookupWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.SendWait(ctx, "before the list: to our relays"); err != nil {
			t.Fatal(err)
		}
		inbox := relays[2]
		r := startReader(t, ctx, opSK, []string{inbox}, "--inbox", inbox, "--inbox-on", ours[0])
		// Wait (bounded by ctx) until the DM has seen the new list on its subscription.
		for !strings.Contains(logs.String(), `msg="operator DM relays (kind 10050)" component=notify recipient=`+op) {
			select {
			case <-ctx.Done():
				t.Fatalf("the kind 10050 list was never seen:\n%s\nreader:\n%s", logs, r.stderr)
			case <-time.After(50 * time.Millisecond):
			}
		}
		text := "after the list: to the operator's inbox"
		sent := time.Now()
		if _, err := d.SendWait(ctx, text); err != nil {
			t.Fatal(err)
		}
		// The reader reads only the inbox relay: the first message never reached it.
		checkDM(t, r.next(t), cosigner, op, []string{op}, text, sent)
	})

	t.Run("bad input", func(t *testing.T) {
		_, op := keyPair(t)
		d, err := notify.New(cosignerSK, []string{op}, pool, log, notify.WithLookupWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{"", strings.Repeat("x", notify.MaxTextBytes+1)} {
			if err := d.Send(ctx, text); err == nil {
				t.Errorf("Send(%d bytes) accepted", len(text))
			}
		}
		d.Close()
		if err := d.Send(ctx, "after close"); err == nil {
			t.Error("Send after Close accepted")
		}
		if _, err := notify.New(cosignerSK, nil, pool, log); err == nil {
			t.Error("New with no recipients accepted")
		}
		if _, err := notify.New(cosignerSK, []string{"npub1bad"}, pool, log); err == nil {
			t.Error("New with a bad npub accepted")
		}
	})
	if t.Failed() {
		b, _ := os.ReadFile(filepath.Join(net.Dir(), "relay-2.log"))
		t.Logf("relay-2.log:\n%s", b)
	}
}
