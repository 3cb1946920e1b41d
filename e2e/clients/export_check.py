#!/usr/bin/env python3
"""Open what `cosigner export` printed in a real wallet library and print its addresses.

  export_check.py bdk NETWORK N          reads `cosigner export` (descriptors) on stdin;
                                         run with the venv's python (bdkpython)
  export_check.py electrum NETWORK N     reads `cosigner export --format electrum` on stdin;
                                         run with Debian's python3 (python3-electrum)

Prints {"receive": [N addresses], "change": [N addresses]} as the wallet derives them, so the
test can compare them with the addresses cosigner's watcher derives. Any failure to import is
printed on stderr with exit 1.
"""
import json
import os
import sys
import tempfile


def bdk_addresses(network: str, n: int, text: str) -> dict:
    import bdkpython as bdk
    nets = {"regtest": (bdk.Network.REGTEST, bdk.NetworkKind.TEST), "testnet": (bdk.Network.TESTNET, bdk.NetworkKind.TEST),
            "signet": (bdk.Network.SIGNET, bdk.NetworkKind.TEST), "testnet4": (bdk.Network.TESTNET4, bdk.NetworkKind.TEST),
            "mainnet": (bdk.Network.BITCOIN, bdk.NetworkKind.MAIN)}
    descs = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    if len(descs) != 2:
        raise SystemExit(f"want a receive and a change descriptor, got {len(descs)} lines")
    net, kind = nets[network]
    w = bdk.Wallet(bdk.Descriptor(descs[0], kind), bdk.Descriptor(descs[1], kind), net, bdk.Persister.new_in_memory())
    out = {}
    for name, kind in (("receive", bdk.KeychainKind.EXTERNAL), ("change", bdk.KeychainKind.INTERNAL)):
        out[name] = [str(w.peek_address(kind, i).address) for i in range(n)]
    return out


def electrum_addresses(network: str, n: int, text: str) -> dict:
    from electrum import constants
    from electrum.simple_config import SimpleConfig
    from electrum.storage import WalletStorage
    from electrum.wallet import Wallet
    from electrum.wallet_db import WalletDB
    from electrum.util import create_and_start_event_loop

    if network == "regtest":
        constants.set_regtest()
    elif network in ("testnet", "testnet4", "signet"):
        constants.set_testnet()
    loop, stop_loop, loop_thread = create_and_start_event_loop()
    try:
        return _electrum_open(network, n, text, constants, SimpleConfig, WalletStorage, Wallet, WalletDB)
    finally:
        loop.call_soon_threadsafe(stop_loop.set_result, 1)
        loop_thread.join(timeout=5)


def _electrum_open(network, n, text, constants, SimpleConfig, WalletStorage, Wallet, WalletDB) -> dict:
    with tempfile.TemporaryDirectory() as home:
        path = os.path.join(home, "wallet")
        with open(path, "w") as f:
            f.write(text)
        config = SimpleConfig({"electrum_path": home, network if network in ("regtest", "testnet") else "testnet": True})
        storage = WalletStorage(path)
        db = WalletDB(storage.read(), manual_upgrades=False)
        wallet = Wallet(db, storage, config=config)
        if not wallet.is_watching_only():
            raise SystemExit("the exported wallet is not watch-only")
        out = {"wallet_type": wallet.wallet_type, "txin_type": wallet.txin_type}
        out["receive"] = [wallet.derive_address(False, i) for i in range(n)]
        out["change"] = [wallet.derive_address(True, i) for i in range(n)]
        return out


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("bdk", "electrum"):
        raise SystemExit(__doc__)
    kind, network, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = sys.stdin.read()
    res = bdk_addresses(network, n, text) if kind == "bdk" else electrum_addresses(network, n, text)
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
