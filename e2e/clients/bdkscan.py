#!/usr/bin/env python3
"""bdkscan.py: time BDK's (bdkpython 3.1.1) Electrum full scan of a watch-only
wallet, the baseline of bench/chainwatch_test.go.

  bdkscan.py --descriptor D --electrum tcp://127.0.0.1:PORT --network regtest
             [--stop-gap 20] [--batch-size 100]

D is ONE public multipath descriptor (BIP-389), receive /0/*, change /1/*,
e.g. wsh(sortedmulti(2,tpubA/<0;1>/*,tpubB/<0;1>/*,tpubC/<0;1>/*)); the
script splits it into its two single-path descriptors (a checksum, if any,
is dropped). The wallet lives in memory.

Prints one JSON object on stdout:
  {"scan_seconds": wall time of ElectrumClient construction + full_scan,
   "apply_seconds": wall time of wallet.apply_update,
   "utxos": number of unspent outputs, "balance_sat": total balance,
   "last_receive_index": highest revealed receive index or null,
   "last_change_index": same for change}
Errors go to stderr; exit status 1 on failure, 2 on usage errors.
"""
import argparse
import json
import sys
import time

import bdkpython as bdk

NETWORKS = {
    "regtest": (bdk.Network.REGTEST, bdk.NetworkKind.TEST),
    "signet": (bdk.Network.SIGNET, bdk.NetworkKind.TEST),
    "testnet": (bdk.Network.TESTNET, bdk.NetworkKind.TEST),
    "bitcoin": (bdk.Network.BITCOIN, bdk.NetworkKind.MAIN),
}


def split_multipath(desc: str) -> tuple:
    body = desc.split("#", 1)[0].strip()
    if "/<0;1>/" not in body or "<" in body.replace("/<0;1>/", ""):
        raise ValueError("--descriptor must use the multipath step /<0;1>/* on every key")
    return body.replace("/<0;1>/", "/0/"), body.replace("/<0;1>/", "/1/")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--descriptor", required=True)
    p.add_argument("--electrum", required=True)
    p.add_argument("--network", default="regtest", choices=sorted(NETWORKS))
    p.add_argument("--stop-gap", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    args = p.parse_args()

    network, kind = NETWORKS[args.network]
    try:
        receive, change = split_multipath(args.descriptor)
        wallet = bdk.Wallet(bdk.Descriptor(receive, kind), bdk.Descriptor(change, kind),
                            network, bdk.Persister.new_in_memory())
    except Exception as e:
        print(f"bdkscan: bad --descriptor: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    try:
        began = time.perf_counter()
        client = bdk.ElectrumClient(args.electrum)
        request = wallet.start_full_scan().build()
        update = client.full_scan(request, args.stop_gap, args.batch_size, False)
        scanned = time.perf_counter()
        wallet.apply_update(update)
        applied = time.perf_counter()
    except Exception as e:
        print(f"bdkscan: electrum {args.electrum}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    print(json.dumps({
        "scan_seconds": scanned - began,
        "apply_seconds": applied - scanned,
        "utxos": len(wallet.list_unspent()),
        "balance_sat": wallet.balance().total.to_sat(),
        "last_receive_index": wallet.derivation_index(bdk.KeychainKind.EXTERNAL),
        "last_change_index": wallet.derivation_index(bdk.KeychainKind.INTERNAL),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
