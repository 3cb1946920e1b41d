package signer

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAnswerLogsHandlingTime: each answer's log line carries "took", the time from the event's
// arrival at the relay pool to the answer (the co-signer's own share of the round trip, which
// e2e/flood compares with and without a flood).
func TestAnswerLogsHandlingTime(t *testing.T) {
	h := newHarness(t)
	var buf syncBuffer
	h.rs.log = slog.New(slog.NewTextHandler(&buf, nil)).With("component", "signer")
	ctx := context.Background()
	if err := h.db.AddConnectSecret(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if r := h.one(h.request("c", "connect", h.rs.PublicKey(), "s1")); r.Result != "ack" {
		t.Fatalf("connect: %+v", r)
	}
	// The event arrived an hour ago (as the pool reports it): took counts from then.
	h.rs.handleEvent(withArrival(ctx, time.Now().Add(-time.Hour)), h.request("p", "sign_psbt", "cHNidP8"), "mem://")
	if n := len(h.pool.take()); n != 1 {
		t.Fatalf("%d answers, want 1", n)
	}
	m := regexp.MustCompile(`msg=answered .*id=p .*took=(\S+)`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("no answer log line with took for id p:\n%s", buf.String())
	}
	took, err := time.ParseDuration(m[1])
	if err != nil || took < time.Hour || took > 2*time.Hour {
		t.Fatalf("took=%s (%v), want an hour and a little", m[1], err)
	}
}
