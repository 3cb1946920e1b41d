#!/usr/bin/env bash
# scripts/install-tools.sh — install the pinned tools that the local test network
# (internal/devnet), the end-to-end tests and the demo need.
#
#   btcd + btcctl  v0.24.2            -> $TOOLS_DIR/bin          (go install)
#   ElectrumX, plyvel, bdkpython, nostr-sdk -> $TOOLS_DIR/venv   (pip, scripts/requirements.txt)
#   nostr-tools, ws, @nostr-relay/*   -> internal/devnet/node/node_modules (npm ci, package-lock.json)
#
# TOOLS_DIR defaults to <repo>/.tools (git-ignored). PYTHON picks the interpreter
# for the venv (default python3, 3.10 or newer). The script is idempotent: each step
# writes a stamp file naming what it installed and is skipped while the stamp
# matches. FORCE=1 redoes every step. On failure it names the step and its log
# file and exits non-zero.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
mkdir -p "$TOOLS_DIR"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
PYTHON=${PYTHON:-python3}
FORCE=${FORCE:-0}

BTCD_VERSION=v0.24.2
NODE_DIR=$ROOT/internal/devnet/node
REQUIREMENTS=$ROOT/scripts/requirements.txt

LOG_DIR=$TOOLS_DIR/logs
STAMP_DIR=$TOOLS_DIR/stamps
mkdir -p "$TOOLS_DIR/bin" "$LOG_DIR" "$STAMP_DIR"

say() { printf 'install-tools: %s\n' "$*"; }

sha() { cat "$@" | sha256sum | cut -c1-16; }

# run_step NAME STAMP_CONTENT CHECK_PATH FUNCTION
# Skips when $STAMP_DIR/NAME holds STAMP_CONTENT and CHECK_PATH exists; otherwise
# runs FUNCTION with its output in $LOG_DIR/NAME.log and writes the stamp.
run_step() {
	local name=$1 want=$2 check=$3 fn=$4
	local stamp=$STAMP_DIR/$name log=$LOG_DIR/$name.log
	if [[ $FORCE != 1 && -e $check && -f $stamp && $(cat "$stamp") == "$want" ]]; then
		say "$name: up to date ($want)"
		return 0
	fi
	local start=$SECONDS
	rm -f "$stamp"
	# Not inside `if`: bash ignores errexit in a conditional context, so the
	# subshell's `set -e` works only when run like this.
	local rc=0
	set +e
	(
		set -e
		"$fn"
	) >"$log" 2>&1
	rc=$?
	set -e
	if [[ $rc != 0 ]]; then
		say "$name: FAILED (exit $rc) — see $log; its last lines:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
	if [[ ! -e $check ]]; then
		say "$name: FAILED — step finished but $check is missing; see $log" >&2
		exit 1
	fi
	printf '%s' "$want" >"$stamp"
	say "$name: installed ($want) in $((SECONDS - start))s"
}

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		say "prerequisite missing: $1 ($2)" >&2
		exit 1
	fi
}
need go "Go toolchain, for btcd"
need "$PYTHON" "Python 3.10+, for ElectrumX and bdkpython"
need node "Node.js 18+, for the Nostr relays and client scripts"
need npm "npm, for the Node packages"

# --- btcd --------------------------------------------------------------------
install_btcd() {
	set -x
	GOBIN=$TOOLS_DIR/bin go install \
		"github.com/btcsuite/btcd@$BTCD_VERSION" \
		"github.com/btcsuite/btcd/cmd/btcctl@$BTCD_VERSION"
	"$TOOLS_DIR/bin/btcd" --version
}
run_step btcd "btcd $BTCD_VERSION $(go env GOVERSION)" "$TOOLS_DIR/bin/btcd" install_btcd

# --- Python venv: ElectrumX, plyvel, bdkpython ------------------------------------
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
install_venv() {
	set -x
	"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed, have " + sys.version'
	rm -rf "$TOOLS_DIR/venv"
	"$PYTHON" -m venv "$TOOLS_DIR/venv"
	"$TOOLS_DIR/venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$REQUIREMENTS"
	"$TOOLS_DIR/venv/bin/python" -m pip check
	"$TOOLS_DIR/venv/bin/python" -c 'import electrumx, plyvel, bdkpython, nostr_sdk; print("electrumx", electrumx.version)'
}
run_step python-venv "python $PY_VERSION requirements $(sha "$REQUIREMENTS")" \
	"$TOOLS_DIR/venv/bin/electrumx_server" install_venv

# --- Node packages ---------------------------------------------------------------
install_node() {
	set -x
	node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 18) { console.error("Node 18+ needed, have " + process.version); process.exit(1) }'
	cd "$NODE_DIR"
	npm ci --no-audit --no-fund
	node -e 'import("@nostr-relay/core").then(() => import("@nostr-relay/event-repository-sqlite")).then(() => import("nostr-tools")).then(() => import("ws")).then(() => { require("better-sqlite3")(":memory:").close(); console.log("node packages load") })'
}
run_step node-modules "node $(node --version) lock $(sha "$NODE_DIR/package-lock.json" "$NODE_DIR/package.json")" \
	"$NODE_DIR/node_modules/.package-lock.json" install_node

say "all tools ready in $TOOLS_DIR (node packages in ${NODE_DIR#"$ROOT"/}/node_modules)"
