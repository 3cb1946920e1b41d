package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/custodyagents/cosigner/nip46/session"
)

// TestClientMetadataMigration0017: a session written before 0017 (metadata JSON as the client
// sent it, name from nostrconnect) opens with empty url/image/note and its metadata and name
// kept, so that `clients list` can still read them (through the same validation).
func TestClientMetadataMigration0017(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old := openBefore(ctx, t, path, 17)
	if _, err := old.ExecContext(ctx, `INSERT INTO client_sessions(client_pubkey, connected_at, perms, metadata, name)
		VALUES ('alice', 1, 'sign_psbt', '{"name":"Old","url":"https://old.example"}', '')`); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ss, err := db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Perms != "sign_psbt" || ss[0].Metadata != `{"name":"Old","url":"https://old.example"}` ||
		ss[0].Info != (session.ClientInfo{}) {
		t.Fatalf("sessions after 0017: %+v %v", ss, err)
	}
}
