package nip46e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/scenario"
)

// TestReplayAcrossRestart replays a client's logout, through a relay that has not seen it,
// after the client has connected again and the daemon has restarted (the event's created_at is
// still within the accepted clock skew). The replay must not end the new session: handled event
// ids are kept in SQLite for the replay window (signer.SeenEvents, store.FirstSeenEvent).
func TestReplayAcrossRestart(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := connectClients(ctx, t, env, 2, "")[1] // a fresh client key
	logout, id, err := c.Request("logout")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Send(ctx, logout, id); err != nil || r.Result != "ack" {
		t.Fatalf("logout: %+v, %v", r, err)
	}
	if r, err := c.Call(ctx, "connect", env.KeyA.NostrPubKey, secretOf(t, bunkerURI(ctx, t, env, ""))); err != nil || r.Result != "ack" {
		t.Fatalf("connect again: %+v, %v", r, err)
	}
	if err := env.StopDaemon(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartDaemon(ctx); err != nil {
		t.Fatal(err)
	}
	// The network's relays have seen this event and do not pass a duplicate on; an attacker
	// replays it through a relay that has not: the fixture relay, which the cosigner also uses.
	before := strings.Count(readLog(t, env), logout.ID)
	if err := hostile.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	if hostile.Blast(ctx, []blastItem{{Event: &logout}}) == 0 {
		t.Fatal("the fixture relay could not send the replay")
	}
	// Requests are handled concurrently, so a ping sent now could be answered before the
	// replay is looked at: wait until the daemon's log mentions the replayed event again.
	for strings.Count(readLog(t, env), logout.ID) == before {
		select {
		case <-ctx.Done():
			t.Fatalf("the daemon never logged the replayed event %s", logout.ID)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("the daemon on the replay: %s", lastLineWith(readLog(t, env), logout.ID))
	r, err := c.Call(ctx, "ping")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != "pong" {
		t.Fatalf("after a replayed logout across a restart, ping answered %+v: the replay ended the new session", r)
	}
}

func readLog(t *testing.T, env *scenario.Env) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Dir, "cosigner.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLineWith(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
