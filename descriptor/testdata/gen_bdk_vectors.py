#!/usr/bin/env python3
"""Generate bdk_vectors.json: addresses and scripts that BDK (bdkpython 3.1.1)
derives for 2-of-3 multisig descriptors (wsh, sh(wsh), and tr with
multi_a/sortedmulti_a leaves and the BIP-341 NUMS internal key) on regtest, so the Go package
can be cross-checked against an independent implementation.

Run:
    python3 -m venv /tmp/bdkvenv && /tmp/bdkvenv/bin/pip install bdkpython==3.1.1
    /tmp/bdkvenv/bin/python descriptor/testdata/gen_bdk_vectors.py > descriptor/testdata/bdk_vectors.json

bdkpython 3.1.1 (rust-miniscript 12) does not know sortedmulti_a(), so the
taproot vectors use multi_a(); sortedmulti_a() is checked against BIP-387's
own vectors instead.

The three keys come from fixed BIP-39 entropies (test keys only) at the BIP-48
P2WSH account path m/48'/1'/0'/2'.
"""
import json
import sys

import bdkpython as bdk

ACCOUNT = "m/48h/1h/0h/2h"
N_ADDRESSES = 5


def account_xpub(entropy_byte: int) -> str:
    mnemonic = bdk.Mnemonic.from_entropy(bytes([entropy_byte]) * 16)
    root = bdk.DescriptorSecretKey(bdk.NetworkKind.TEST, mnemonic, None)
    return str(root.derive(bdk.DerivationPath(ACCOUNT)).as_public())


NUMS = "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0"


def vector(func: str, keys: list, body: str = "") -> dict:
    if not body:
        body = f"wsh({func}(2,{','.join(k + '/<0;1>/*' for k in keys)}))"
    desc = bdk.Descriptor(body, bdk.NetworkKind.TEST)
    wallet = bdk.Wallet.create_from_two_path_descriptor(
        desc, bdk.Network.REGTEST, bdk.Persister.new_in_memory())
    branches = []
    for b, kind in enumerate([bdk.KeychainKind.EXTERNAL, bdk.KeychainKind.INTERNAL]):
        single = desc.to_single_descriptors()[b]
        addrs = []
        for i in range(N_ADDRESSES):
            info = wallet.peek_address(kind, i)
            addr = str(info.address)
            # Two BDK code paths must agree before the vector is trusted.
            assert addr == str(single.derive_address(i, bdk.Network.REGTEST)), (b, i)
            addrs.append({
                "index": i,
                "address": addr,
                "pk_script": info.address.script_pubkey().to_bytes().hex(),
            })
        branches.append({
            "descriptor": str(single),
            "wallet_descriptor": wallet.public_descriptor(kind),
            "addresses": addrs,
        })
    return {
        "input": body,
        "bdk_string": str(desc),
        "max_weight_to_satisfy": desc.max_weight_to_satisfy(),
        "branches": branches,
    }


def main() -> None:
    keys = [account_xpub(b) for b in (0x00, 0x01, 0x02)]
    out = {
        "generator": "descriptor/testdata/gen_bdk_vectors.py",
        "bdkpython": "3.1.1",
        "network": "regtest",
        "keys": keys,
        "vectors": [vector("sortedmulti", keys), vector("multi", keys)] + [
            vector("", keys, b.format(*[k + "/<0;1>/*" for k in keys], nums=NUMS)) for b in (
                "sh(wsh(sortedmulti(2,{0},{1},{2})))",
                "sh(wsh(multi(2,{0},{1},{2})))",
                "tr({nums},multi_a(2,{0},{1},{2}))",
                "tr({nums},{{multi_a(2,{0},{1}),{{multi_a(2,{0},{2}),multi_a(2,{1},{2})}}}})",
                "tr({0},multi_a(2,{1},{2}))",
                "tr({nums},{{multi_a(2,{0},{1}),multi_a(3,{0},{1},{2})}})",
            )],
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
