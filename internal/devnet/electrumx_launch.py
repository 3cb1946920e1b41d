"""Start ElectrumX (the pinned e-x package) for the local test network.

ElectrumX 1.18 sends Electrum TCP responses through PaddedRSTransport, which
pads them to uniform sizes against traffic analysis and holds a small response
back until 1 s after the previous send on that connection
(WAIT_FOR_BUFFER_GROWTH_SECONDS). On a loopback test network that only adds a
second to most round trips, so the harness sets the wait from
DEVNET_ELECTRUMX_PADDING_WAIT (seconds; "1.0" restores the stock behaviour).
Padding itself stays on. Nothing else is changed: this runs ElectrumX's own
main() with the environment the harness sets (COIN, DAEMON_URL, ...).
"""
import os
import sys

from electrumx.cli.electrumx_server import main
from electrumx.server import transport

wait = os.environ.get("DEVNET_ELECTRUMX_PADDING_WAIT")
if wait is not None:
    transport.PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = float(wait)

if __name__ == "__main__":
    sys.argv[0] = "electrumx_server"
    sys.exit(main())
