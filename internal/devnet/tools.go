package devnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// installHint is appended to every ErrToolMissing.
const installHint = "run scripts/install-tools.sh"

// RepoRoot walks up from the working directory to the folder holding go.mod (the repository
// root), for tools and scripts that live in the repository.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("devnet: no go.mod found above the working directory; set Config.ToolsDir")
		}
		dir = parent
	}
}

// ToolsDir is where scripts/install-tools.sh puts the tools: $TOOLS_DIR when set (as the
// script reads it), otherwise <repo>/.tools.
func ToolsDir() (string, error) {
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		return filepath.Abs(d)
	}
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(repo, ".tools"), nil
}

// tools are the absolute paths of the programs the network runs.
type tools struct {
	btcd      string // <tools>/bin/btcd
	electrumx string // <tools>/venv/bin/electrumx_server (checked; started through launcher)
	python    string // <tools>/venv/bin/python
	launcher  string // <repo>/internal/devnet/electrumx_launch.py
	node      string // node on PATH
	relayJS   string // <repo>/internal/devnet/node/relay.mjs
	nodeDir   string // <repo>/internal/devnet/node

	nostrRsRelay string // <tools>/bin/nostr-rs-relay, when a relay runs it (findNostrRsRelay)
}

// findTools locates every tool, returning an error wrapping ErrToolMissing
// that names the first one missing and how to install it.
func findTools(repoRoot, toolsDir string) (tools, error) {
	rel := func(p string) string {
		if r, err := filepath.Rel(repoRoot, p); err == nil && repoRoot != "" {
			return r
		}
		return p
	}
	t := tools{
		btcd:      filepath.Join(toolsDir, "bin", "btcd"),
		electrumx: filepath.Join(toolsDir, "venv", "bin", "electrumx_server"),
		nodeDir:   filepath.Join(repoRoot, "internal", "devnet", "node"),
	}
	t.relayJS = filepath.Join(t.nodeDir, "relay.mjs")
	t.python = filepath.Join(toolsDir, "venv", "bin", "python")
	t.launcher = filepath.Join(repoRoot, "internal", "devnet", "electrumx_launch.py")
	if !isFile(t.btcd) {
		return t, fmt.Errorf("btcd not found in %s: %s: %w", rel(filepath.Dir(t.btcd)), installHint, ErrToolMissing)
	}
	if !isFile(t.electrumx) {
		return t, fmt.Errorf("electrumx_server not found in %s: %s: %w", rel(filepath.Dir(t.electrumx)), installHint, ErrToolMissing)
	}
	if !isFile(t.python) {
		return t, fmt.Errorf("python not found in %s: %s: %w", rel(filepath.Dir(t.python)), installHint, ErrToolMissing)
	}
	if !isFile(t.launcher) {
		return t, fmt.Errorf("electrumx_launch.py not found in %s: %w", rel(filepath.Dir(t.launcher)), ErrToolMissing)
	}
	if !isFile(t.relayJS) {
		return t, fmt.Errorf("relay.mjs not found in %s: %w", rel(t.nodeDir), ErrToolMissing)
	}
	if !isFile(filepath.Join(t.nodeDir, "node_modules", "@nostr-relay", "core", "package.json")) {
		return t, fmt.Errorf("@nostr-relay/core not found in %s: %s: %w", rel(filepath.Join(t.nodeDir, "node_modules")), installHint, ErrToolMissing)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return t, fmt.Errorf("node (Node.js 18+) not found on PATH: install Node.js, then %s: %w", installHint, ErrToolMissing)
	}
	t.node = node
	return t, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
