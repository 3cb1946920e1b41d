package chainwatch

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

// startDevnet starts the local test network for an integration test, closed when the test ends;
// under -short the test is skipped.
func startDevnet(ctx context.Context, t *testing.T) *devnet.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local test network (make test)")
	}
	n, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir()})
	if errors.Is(err, devnet.ErrToolMissing) {
		t.Fatalf("devnet.Start: %v (the local test network needs its tools: run scripts/install-tools.sh)", err)
	}
	if err != nil {
		t.Fatalf("devnet.Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// openStore opens a new store file name in a temporary directory; the caller closes it.
func openStore(ctx context.Context, t *testing.T, name string) *store.DB {
	t.Helper()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newProxy puts target (host:port) behind a devnet.Proxy (rewrite may be nil), closed when the
// test ends.
func newProxy(t *testing.T, target string, rewrite func(line string) string) *devnet.Proxy {
	t.Helper()
	p, err := devnet.NewProxy(target, rewrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
