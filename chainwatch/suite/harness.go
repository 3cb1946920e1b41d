package suite

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/store"
)

// How long the suite waits for the watcher to reach a state. These bound a
// hang; they are not speed assertions (CI machines are slow and shared).
const (
	readyTimeout    = 3 * time.Minute
	convergeTimeout = 90 * time.Second
	eventTimeout    = 90 * time.Second
)

// EventLog collects a watcher's events in arrival order.
type EventLog struct {
	mu  sync.Mutex
	evs []chainwatch.Event
}

func (l *EventLog) collect(ch <-chan chainwatch.Event) {
	for ev := range ch {
		l.mu.Lock()
		l.evs = append(l.evs, ev)
		l.mu.Unlock()
	}
}

// Snapshot returns the events so far, oldest first.
func (l *EventLog) Snapshot() []chainwatch.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]chainwatch.Event(nil), l.evs...)
}

// Wait returns the first event matching match, waiting up to eventTimeout.
func (l *EventLog) Wait(t testing.TB, what string, match func(chainwatch.Event) bool) chainwatch.Event {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		for _, ev := range l.Snapshot() {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v; events: %s", what, eventTimeout, kinds(l.Snapshot()))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func kinds(evs []chainwatch.Event) string {
	var sb strings.Builder
	for i, ev := range evs {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%T%+v", ev, ev)
	}
	return sb.String()
}

// Running is a Watcher whose Run loop the harness owns.
type Running struct {
	*chainwatch.Watcher
	Events *EventLog
	cancel context.CancelFunc
	// finished is closed once Run has returned (its result in err) and its events are
	// collected; any number of waiters may wait on it.
	finished chan struct{}
	err      error
	reported bool // err was already reported (Run returned before Ready)
	stopped  bool
}

// WatcherOptions configures StartWatcher.
type WatcherOptions struct {
	Lookahead int // default chainwatch.DefaultLookahead
	LogLevel  slog.Level
	NoWait    bool // return without waiting for Ready
}

// OpenStore opens (creating) the SQLite store at dir/name.
func OpenStore(t testing.TB, dir, name string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// StartWatcher starts a Watcher of src on the backend's server, persisting to
// db, and waits until it is Ready (unless opts.NoWait). It is stopped at the
// end of the test if Stop was not called.
func StartWatcher(t testing.TB, b Backend, db *store.DB, src chainwatch.ScriptSource, opts WatcherOptions) *Running {
	t.Helper()
	var eopts electrum.Options
	if co, ok := b.(ClientOptions); ok {
		eopts = co.ElectrumOptions()
	}
	eopts.RequestTimeout = 60 * time.Second
	w, err := chainwatch.New(chainwatch.Config{
		ServerURL: b.ServerURL(), Scripts: src, DB: db, Params: b.Params(), Lookahead: opts.Lookahead,
		Logger:       slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: opts.LogLevel})),
		ClientName:   "cosigner-suite",
		ReconnectMin: 100 * time.Millisecond,
		ReconnectMax: 2 * time.Second,
		Electrum:     eopts,
	})
	if err != nil {
		t.Fatalf("chainwatch.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Watcher: w, Events: &EventLog{}, cancel: cancel, finished: make(chan struct{})}
	collected := make(chan struct{})
	go func() { r.Events.collect(w.Events()); close(collected) }()
	go func() { err := w.Run(ctx); <-collected; r.err = err; close(r.finished) }()
	t.Cleanup(func() { r.Stop(t) })
	if opts.NoWait {
		return r
	}
	select {
	case <-w.Ready():
	case <-r.finished:
		r.reported = true
		t.Fatalf("Run returned before Ready: %v", r.err)
	case <-time.After(readyTimeout):
		t.Fatalf("watcher not Ready after %v: %+v", readyTimeout, w.Health())
	}
	return r
}

// Stop cancels Run and waits for it; Run must return nil (unless StartWatcher
// already failed the test with its error). Idempotent; call it from the test's
// goroutine.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	select {
	case <-r.finished:
		if r.err != nil && !r.reported {
			t.Errorf("Run returned %v after cancel, want nil", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Run did not return within 30 s of cancel")
	}
}

// Converge waits until the watcher's UTXO set equals want and its tip is the
// node's tip, and fails the test with the differences otherwise.
func Converge(t testing.TB, b Backend, r *Running, want Truth) {
	t.Helper()
	tip, err := BestBlock(b.Node())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(convergeTimeout)
	for {
		diff := Diff(r.UTXOs(), want)
		got := r.Tip()
		if diff == "" && got == tip {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the watcher differs from the node:\n%s\nwatcher tip %d %s, node tip %d %s\nhealth %+v\nevents: %s",
				convergeTimeout, diff, got.Height, got.Hash, tip.Height, tip.Hash, r.Health(), kinds(r.Events.Snapshot()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
