#!/usr/bin/env bash
# scripts/install-tools.sh — install the pinned tools that the local test network
# (internal/devnet), the end-to-end tests and the demo need.
#
#   btcd + btcctl  v0.24.2            -> $TOOLS_DIR/bin          (go install)
#   ElectrumX, plyvel, bdkpython, nostr-sdk, electrum-aionostr -> $TOOLS_DIR/venv   (pip, scripts/requirements.txt)
#   nostr-tools, ws, @nostr-relay/*   -> internal/devnet/node/node_modules (npm ci, package-lock.json)
#   nostr-rs-relay 0.8.12, electrs 0.12.0 -> $TOOLS_DIR/bin (cargo install, built once into
#                                       $CACHE_DIR/<crate>-<version>, outside the clone)
#   Debian packages the builds and the container test need (clang, libclang-dev,
#   protobuf-compiler, docker.io, mmdebstrap, python3-electrum) -> apt-get, when missing and running as root
#
# CACHE_DIR (default $HOME/.cache/cosigner) keeps the slow Rust builds across clones: a
# rerun copies the cached binary instead of rebuilding (~6 and ~12 min on 2 cores).
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
CACHE_DIR=${CACHE_DIR:-${HOME:-/root}/.cache/cosigner}
mkdir -p "$CACHE_DIR"

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
need cargo "Rust toolchain (cargo), for nostr-rs-relay and electrs"

# --- Debian packages -------------------------------------------------------------
# The Rust builds need clang/libclang (rocksdb's bindgen, for electrs) and protoc (for
# nostr-rs-relay); `cosigner export`'s test opens wallets with Debian's Electrum library
# (python3-electrum); electrum_ecc (pip) loads libsecp256k1-1; the container test needs the Docker engine and mmdebstrap (base images
# are made locally: nothing can be pulled from a registry).
DEB_PACKAGES=(clang libclang-dev protobuf-compiler docker.io mmdebstrap python3-electrum libsecp256k1-1)
missing_debs() {
	local p
	for p in "${DEB_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$p"
	done
}
MISSING_DEBS=$(missing_debs)
if [[ -n $MISSING_DEBS ]]; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
		install_debs() {
			set -x
			apt-get update -qq
			# shellcheck disable=SC2086
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING_DEBS
		}
		run_step debian-packages "debs ${DEB_PACKAGES[*]} $(date +%s)" /usr/bin/dpkg install_debs
	else
		say "prerequisite Debian packages missing: $MISSING_DEBS(install them with apt-get as root)" >&2
		exit 1
	fi
else
	say "debian-packages: up to date (${DEB_PACKAGES[*]})"
fi

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
	# electrum_ecc (electrum-aionostr's curve library) would build libsecp256k1 with autotools;
	# it loads Debian's libsecp256k1-1 instead.
	ELECTRUM_ECC_DONT_COMPILE=1 "$TOOLS_DIR/venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$REQUIREMENTS"
	"$TOOLS_DIR/venv/bin/python" -m pip check
	"$TOOLS_DIR/venv/bin/python" -c 'import electrumx, plyvel, bdkpython, nostr_sdk, electrum_aionostr, electrum_ecc; print("electrumx", electrumx.version)'
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

# --- Rust tools: nostr-rs-relay and electrs, built once into $CACHE_DIR ---------------
# cargo_cached CRATE VERSION BIN [cargo install flags...]: builds CRATE@VERSION into
# $CACHE_DIR/CRATE-VERSION (a temporary root renamed when complete, so a killed build is
# never taken for a finished one) unless already there, then copies BIN into $TOOLS_DIR/bin.
cargo_cached() {
	local crate=$1 version=$2 bin=$3
	shift 3
	local dest=$CACHE_DIR/$crate-$version
	# One build at a time per crate, across clones that share the cache.
	exec 9>"$CACHE_DIR/$crate.lock"
	flock 9
	if [[ ! -x $dest/bin/$bin ]]; then
		rm -rf "$dest.tmp"
		set -x
		cargo install "$crate" --version "$version" --root "$dest.tmp" "$@"
		set +x
		rm -rf "$dest"
		mv "$dest.tmp" "$dest"
	fi
	install -m 0755 "$dest/bin/$bin" "$TOOLS_DIR/bin/$bin"
	"$TOOLS_DIR/bin/$bin" --version || true
}

NOSTR_RS_RELAY_VERSION=0.8.12
# Not --locked: its lock file pins time 0.3.25, which does not build with current rustc.
install_nostr_rs_relay() { cargo_cached nostr-rs-relay "$NOSTR_RS_RELAY_VERSION" nostr-rs-relay; }
run_step nostr-rs-relay "nostr-rs-relay $NOSTR_RS_RELAY_VERSION" "$TOOLS_DIR/bin/nostr-rs-relay" install_nostr_rs_relay

ELECTRS_VERSION=0.12.0
install_electrs() { cargo_cached electrs "$ELECTRS_VERSION" electrs --locked; }
run_step electrs "electrs $ELECTRS_VERSION" "$TOOLS_DIR/bin/electrs" install_electrs

say "all tools ready in $TOOLS_DIR (node packages in ${NODE_DIR#"$ROOT"/}/node_modules)"
