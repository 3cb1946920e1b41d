package relaypool

// gluerelay_test.go — starts the devnet's relay glue (internal/devnet/node/relay.mjs: npm
// @nostr-relay/core behind a ws server) as its own process with options the shared devnet
// does not use: NIP-42 AUTH required, NIP-11 limits.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/devnet"
)

// startGlueRelay runs relay.mjs on a free port with args (for example "--auth") and returns its
// ws:// URL; the relay stops when t ends.
func startGlueRelay(t *testing.T, args ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs node and the relay's npm packages (make test)")
	}
	root, err := devnet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "internal", "devnet", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@nostr-relay", "core")); err != nil {
		t.Fatalf("@nostr-relay/core not installed in %s (run scripts/install-tools.sh)", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not on PATH (run scripts/install-tools.sh): %v", err)
	}
	cmd := exec.Command(node, append([]string{"relay.mjs", "0", ":memory:"}, args...)...)
	cmd.Dir = dir
	logPath := filepath.Join(t.TempDir(), "relay.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "relay listening on "); ok {
				urlc <- u
			}
		}
	}()
	select {
	case u := <-urlc:
		return u
	case <-time.After(30 * time.Second):
		b, _ := os.ReadFile(logPath)
		t.Fatalf("relay.mjs %v did not start; its stderr:\n%s", args, b)
		return ""
	}
}
