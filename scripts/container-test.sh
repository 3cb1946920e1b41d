#!/usr/bin/env bash
# container-test.sh — a Docker engine of its own, the base images made locally, and the cosigner
# image built from the repository's Dockerfile. The container test (e2e/container) runs
#   scripts/container-test.sh up     # prints KEY=VALUE lines: DOCKER_HOST, DOCKER, IMAGE (its id),
#                                    # ENGINE_STARTED
#   ...docker run the image...
#   scripts/container-test.sh down   # stops this script's engine (pidfile in $COSIGNER_DOCKER_DIR)
#                                    # unless containers still run on it (another test run)
# and it can be run by hand the same way (`env` prints the DOCKER_HOST line only).
#
# The engine: Debian's docker.io `dockerd` with its own data root, exec root, socket and pidfile
# under $COSIGNER_DOCKER_DIR (default $CACHE_DIR/docker, outside the clone), so images and build
# layers are kept between runs: `docker build`'s layer cache rebuilds only what changed (go.mod and
# go.sum → modules; any file of the build context → the binary). If the engine cannot start this
# script fails and prints the engine's log; it never skips. COSIGNER_DOCKER_HOST=unix:///… uses an
# engine that is already running instead (it is then neither started nor stopped here).
#
# The base images: nothing is pulled. The build stage's golang:1.26-bookworm is made here when the
# engine lacks it: a Debian bookworm (mmdebstrap, minbase, plus gcc, libc6-dev and
# ca-certificates) with this machine's Go toolchain ($(go env GOROOT)) copied in, tagged like the
# official image. The runtime stage is `scratch`, which needs no image.
#
# The build: the legacy builder (DOCKER_BUILDKIT=0, as Debian's engine has no buildx), given
#   - EXTRA_CA_CERTS: the certificates this machine adds to Debian's defaults
#     (/usr/local/share/ca-certificates/**.crt, what update-ca-certificates adds), so the build
#     stage reaches the Go module proxy behind a TLS-intercepting proxy as the host does; they are
#     used by the build stage only and never reach the image;
#   - GOPROXY, GOSUMDB, GOPRIVATE, GONOSUMDB, GONOPROXY, GOINSECURE, GOFLAGS: the host's `go env`;
#   - HTTP(S)_PROXY/NO_PROXY when set (Docker's predefined build args, kept out of the history).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${CACHE_DIR:-${HOME:-/root}/.cache/cosigner}
STATE=${COSIGNER_DOCKER_DIR:-$CACHE_DIR/docker}
IMAGE=${COSIGNER_IMAGE:-cosigner:test}
GO_IMAGE=golang:1.26-bookworm
SOCK=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
ENGINE_LOG=$STATE/dockerd.log
# The Docker CLI: Debian's, which matches Debian's engine; any other on PATH otherwise.
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}

log() { printf 'container-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ -n "$DOCKER" ] || die "no docker CLI found (install Debian's docker.io: apt-get install docker.io)"

if [ -n "${COSIGNER_DOCKER_HOST:-}" ]; then
	export DOCKER_HOST=$COSIGNER_DOCKER_HOST
else
	export DOCKER_HOST=unix://$SOCK
fi

engine_up() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# start_engine starts dockerd in the background (its own session, so it outlives this script and
# is stopped by `down`) and waits up to 60 s for its API. Prints 1 if it started one, 0 if one
# was already answering on the socket.
start_engine() {
	if engine_up; then
		echo 0
		return
	fi
	[ -n "${COSIGNER_DOCKER_HOST:-}" ] && die "no Docker engine answers at COSIGNER_DOCKER_HOST=$COSIGNER_DOCKER_HOST"
	[ "$(id -u)" = 0 ] || die "starting a Docker engine needs root (or set COSIGNER_DOCKER_HOST to a running engine)"
	local dockerd
	dockerd=$(command -v dockerd || true)
	[ -n "$dockerd" ] || die "dockerd not found (install Debian's docker.io: apt-get install docker.io)"
	mkdir -p "$STATE/root" "$STATE/exec"
	# A pidfile left by a killed engine: the process is gone (engine_up failed), remove it.
	if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		die "dockerd (pid $(cat "$PIDFILE")) runs but does not answer on $SOCK; log: $ENGINE_LOG"
	fi
	rm -f "$PIDFILE" "$SOCK"
	log "starting dockerd (data root $STATE/root, log $ENGINE_LOG)"
	setsid "$dockerd" --data-root "$STATE/root" --exec-root "$STATE/exec" --pidfile "$PIDFILE" \
		--host "unix://$SOCK" --storage-driver overlay2 >"$ENGINE_LOG" 2>&1 </dev/null 9>&- &
	local pid=$! i
	for i in $(seq 1 120); do
		if engine_up; then
			echo 1
			return
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill "$pid" 2>/dev/null || true
	log "the Docker engine did not start; the last lines of $ENGINE_LOG:"
	tail -n 25 "$ENGINE_LOG" >&2 || true
	die "cannot run the container test without a Docker engine"
}

stop_engine() {
	[ -n "${COSIGNER_DOCKER_HOST:-}" ] && return 0
	[ -f "$PIDFILE" ] || return 0
	local pid i
	pid=$(cat "$PIDFILE")
	kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }
	# Containers still running belong to another run of the test (the engine is shared through
	# $STATE): leave the engine to the last one.
	if [ -n "$("$DOCKER" ps --quiet 2>/dev/null)" ]; then
		log "containers still running on $DOCKER_HOST (another test run?): leaving dockerd (pid $pid) running"
		return 0
	fi
	log "stopping dockerd (pid $pid)"
	kill -TERM "$pid"
	for i in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	die "dockerd (pid $pid) did not stop within 30 s after SIGTERM"
}

# go_image makes golang:1.26-bookworm when the engine lacks it, or remakes it when it is a
# stand-in made here from another Go version than this machine's (see the header). An official
# image (pulled into an engine named by COSIGNER_DOCKER_HOST) is kept as it is.
go_image() {
	local goroot gov made
	goroot=$(go env GOROOT)
	gov=$(go env GOVERSION)
	if made=$("$DOCKER" image inspect --format '{{.Comment}}' "$GO_IMAGE" 2>/dev/null); then
		case $made in
		"stand-in for the official $GO_IMAGE: mmdebstrap bookworm minbase + $gov") return ;;
		"stand-in for the official "*) log "$GO_IMAGE was made from another Go toolchain ($made)" ;;
		*) return ;;
		esac
	fi
	command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap): it makes the base image $GO_IMAGE"
	case $gov in go1.26*) ;; *) die "the Go toolchain here is $gov; $GO_IMAGE needs go1.26.x" ;; esac
	[ "$(basename "$goroot")" = go ] || die "GOROOT $goroot is not a directory named go (it is copied to /usr/local/go)"
	log "making $GO_IMAGE: Debian bookworm (mmdebstrap) + $gov from $goroot"
	mmdebstrap --quiet --variant=minbase --include=ca-certificates,gcc,libc6-dev \
		--customize-hook="mkdir -p \"\$1/usr/local\"" \
		--customize-hook="copy-in $goroot /usr/local" \
		--customize-hook="mkdir -p \"\$1/go/bin\" \"\$1/go/src\"" \
		bookworm - http://deb.debian.org/debian |
		"$DOCKER" import \
			--change 'ENV GOLANG_VERSION='"${gov#go}" \
			--change 'ENV GOTOOLCHAIN=local' \
			--change 'ENV GOPATH=/go' \
			--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'WORKDIR /go' \
			--change 'CMD ["bash"]' \
			--message "stand-in for the official $GO_IMAGE: mmdebstrap bookworm minbase + $gov" \
			- "$GO_IMAGE" >/dev/null
}

# extra_ca_certs prints the PEM certificates this machine trusts beyond Debian's defaults.
extra_ca_certs() {
	local f
	[ -d /usr/local/share/ca-certificates ] || return 0
	find /usr/local/share/ca-certificates -type f -name '*.crt' -print0 | sort -z |
		while IFS= read -r -d '' f; do cat "$f"; echo; done
}

build_image() {
	local args=() v
	for v in GOPROXY GOSUMDB GOPRIVATE GONOSUMDB GONOPROXY GOINSECURE GOFLAGS; do
		args+=(--build-arg "$v=$(go env "$v")")
	done
	for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
		if [ -n "${!v:-}" ]; then args+=(--build-arg "$v=${!v}"); fi
	done
	log "building $IMAGE from $ROOT/Dockerfile"
	IMAGE_ID=$(DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$IMAGE" \
		--build-arg "EXTRA_CA_CERTS=$(extra_ca_certs)" "${args[@]}" "$ROOT")
	log "$IMAGE ($IMAGE_ID): $("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE_ID" | awk '{printf "%.1f MB", $1/1e6}')"
}

case ${1:-} in
up)
	mkdir -p "$STATE"
	exec 9>"$STATE/up.lock"
	flock 9
	started=$(start_engine)
	go_image
	build_image
	echo "DOCKER_HOST=$DOCKER_HOST"
	echo "DOCKER=$DOCKER"
	# The image's id rather than its tag: another run may retag $IMAGE meanwhile.
	echo "IMAGE=$IMAGE_ID"
	echo "ENGINE_STARTED=$started"
	;;
down)
	stop_engine
	;;
env)
	echo "DOCKER_HOST=$DOCKER_HOST"
	;;
*)
	echo "usage: $0 up|down|env" >&2
	exit 2
	;;
esac
