package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDatabaseFilesArePrivate (issue 11, finding 8): with a permissive umask, the database,
// its -wal and -shm files are 0600 and a new data directory 0700; a data directory of ours
// that others may read is tightened to 0700.
func TestDatabaseFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "cosigner.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.Exec(`INSERT INTO schema_migrations(version, name) VALUES (9999, 'probe')`); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, 0o700)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		wantMode(t, p, 0o600)
	}
	db.Close()

	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o755)
	db, err = Open(context.Background(), filepath.Join(shared, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantMode(t, shared, 0o700)
}

// TestSharedDataDirOfAnotherUserRefused: a group/world-accessible data directory that belongs
// to another user is refused with the path and the fix (needs root to give it away).
func TestSharedDataDirOfAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to another user")
	}
	dir := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), filepath.Join(dir, "cosigner.db"))
	if !errors.Is(err, ErrSharedDataDir) || !contains(err.Error(), dir) || !contains(err.Error(), "chmod 700") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cosigner.db")); err == nil {
		t.Fatal("the database was created in a shared directory")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func wantMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %04o, want %04o", p, got, want)
	}
}
