package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The database holds PSBTs, policies (with co-signers' bunker secrets) and pending
// nostrconnect secrets: only the daemon's user may read it (issue 11, finding 8).
// ErrSharedDataDir means the data directory is open to group or others and is not the
// daemon's user's to fix.
var ErrSharedDataDir = errors.New("store: the data directory is readable by other users")

const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// prepareFiles makes the database's directory private before the database is opened: a
// missing directory is created 0700; an existing one that group or others may enter is
// tightened to 0700 when the daemon's user owns it, and refused otherwise (ErrSharedDataDir,
// naming the path and the fix). The database file is created 0600 (whatever the umask) or
// tightened to 0600.
func prepareFiles(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("store: create data directory %s: %w", dir, err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("store: data directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("store: data directory %s: %w", dir, err)
	case st.Mode().Perm()&0o077 != 0:
		if !ownedByUs(st) {
			return fmt.Errorf("%w: %s has mode %04o and belongs to another user; give it to the daemon's user with mode 700 (chown <user> %s && chmod 700 %s) or choose another COSIGNER_DATA_DIR",
				ErrSharedDataDir, dir, st.Mode().Perm(), dir, dir)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("store: data directory %s has mode %04o and could not be made private (chmod 700 %s): %w", dir, st.Mode().Perm(), dir, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()
	return privateFiles(path)
}

// privateFiles sets 0600 on the database file and its -wal and -shm files (those that exist),
// whatever the umask was when SQLite created them.
func privateFiles(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: %s: %w", p, err)
		}
		if st.Mode().Perm() != fileMode {
			if err := os.Chmod(p, fileMode); err != nil {
				return fmt.Errorf("store: make %s private (chmod 600): %w", p, err)
			}
		}
	}
	return nil
}

func ownedByUs(st fs.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(s.Uid) == os.Geteuid()
}
