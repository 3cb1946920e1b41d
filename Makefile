# cosigner — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need first (scripts/install-tools.sh: pinned btcd, ElectrumX, bdkpython,
# relay and nostr-tools packages, into .tools/ and internal/devnet/node/node_modules).

GO      ?= go
GOFLAGS ?=
TEST_TIMEOUT ?= 45m

.PHONY: all tools build test unit demo devnet bench fmt vet clean

all: build

tools:
	@bash scripts/install-tools.sh

build:
	$(GO) build -o bin/cosigner ./cmd/cosigner

vet:
	$(GO) vet ./...

# Unit tests of the pure cores, plus the integration and end-to-end tests against the local test
# network (btcd, ElectrumX, three Nostr relays, nostr-tools, bdkpython), all with -race.
test: tools vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Only the tests that need no test network.
unit:
	$(GO) test -race -count=1 -short ./...

# The whole product once, for real, on a local regtest network; prints what happens.
demo: tools
	$(GO) run ./internal/cmd/demo

# The figures DESIGN.md asks for, each next to its baseline measured in the same run.
bench: tools
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./bench/

# Start the local test network by hand and leave it running until Ctrl-C.
devnet: tools
	$(GO) run ./internal/devnet/cmd/devnet

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .devnet .demo

# Every fuzz target of the repository (func Fuzz… in a _test.go file), each for FUZZTIME, one at
# a time (go test -fuzz takes one target per run). The targets are listed per package with
# `go test -list '^Fuzz'`, so new ones are picked up. `make test` runs their seed corpora; an
# input that fails is saved under the package's testdata/fuzz/<target>/ and stops the run.
FUZZTIME ?= 60s
.PHONY: fuzz
fuzz:
	@set -e; \
	for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for target in $$(printf '%s\n' "$$list" | grep '^Fuzz'); do \
			echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done
