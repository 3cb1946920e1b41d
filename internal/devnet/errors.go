package devnet

import "errors"

// Errors returned by the harness. They are wrapped with detail (which tool,
// which port, which service); test with errors.Is.
var (
	// ErrToolMissing: a tool installed by scripts/install-tools.sh (btcd,
	// electrumx_server, the relay's node packages) is not where the harness
	// looks for it. The message names the tool and the folder.
	ErrToolMissing = errors.New("devnet tool missing")

	// ErrPortInUse: a port given in Config is already taken on 127.0.0.1.
	// The message names the port and the service that wanted it.
	ErrPortInUse = errors.New("port already in use")

	// ErrClosed: the Network has been closed.
	ErrClosed = errors.New("devnet closed")

	// ErrNoFunds: the harness key has no mature, unspent coinbase left to fund
	// from; Mine more blocks (coinbases mature after 100 blocks).
	ErrNoFunds = errors.New("devnet: no mature coinbase left")
)
