#!/usr/bin/env python3
"""electrum_nostr.py: the Electrum side of Electrum's psbt_nostr plugin ("Send to
cosigner", Electrum >= 4.6.0) for the end-to-end test, over Electrum's own Nostr
library, PyPI electrum-aionostr 0.1.0 (Manager, PrivateKey.encrypt_message /
decrypt_message, _add_event — the calls the plugin makes).

It does on the wire what the plugin does (spesmilo/electrum
electrum/plugins/psbt_nostr/psbt_nostr.py, CosignerWallet):
  - a keystore's Nostr secret key is sha256(utf8("nostr_psbt:" + xpub)), xpub being
    the keystore string Electrum stores (SLIP-132: Vpub for a p2wsh testnet/regtest
    keystore); this script converts a tpub to Vpub itself (base58check, SLIP-132
    version bytes 0x02575483), independently of cosigner's Go code;
  - send: one kind-4 event to the recipient, NIP-04 of {"tx": <PSBT hex>, "label": …},
    tags [["p", recipient], ["expiration", now + 86400]];
  - receive: subscribes {"kinds":[4], "limit":100, "#p":[own], "since": now − 86400}
    and keeps an event only if it is new, from a co-signer, created within 24 h,
    decrypts and holds {"tx": …}.

Subcommands (one JSON object per line on stdout; logs on stderr; exit 0/1/2):

  vpub --xpub tpub…                      → {"vpub": "Vpub…", "sk": hex, "pubkey": hex}
  send --relays URL,URL --from-xpub VPUB | --from-sk HEX
       --to-xpub VPUB --psbt HEX [--label L] [--created-at-offset SEC] [--pad-label N]
                                          → {"id": event id, "pubkey": sender}
  receive --relays URL,URL --own-xpub VPUB --cosigner-xpub VPUB [--cosigner-xpub …]
          --count N --timeout SEC         → one {"id", "from", "tx", "label"} line per
                                            message kept, then {"done": n}
"""

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time

import electrum_aionostr as aionostr
from electrum_aionostr.key import PrivateKey

KIND = 4
KEEP_DELAY = 24 * 60 * 60
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
VPUB = bytes.fromhex("02575483")  # SLIP-132: p2wsh multisig, testnet


def b58decode_check(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(s) - len(s.lstrip("1"))) + raw
    data, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4] != check:
        raise ValueError("bad base58 checksum")
    return data


def b58encode_check(data: bytes) -> str:
    data = data + hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def to_vpub(xpub: str) -> str:
    raw = b58decode_check(xpub)
    if len(raw) != 78:
        raise ValueError("not an extended public key")
    return b58encode_check(VPUB + raw[4:])


def channel_key(keystore_xpub: str):
    """(secret hex, x-only pubkey hex) of a keystore string, as the plugin derives them."""
    sk = hashlib.sha256(("nostr_psbt:" + keystore_xpub).encode("utf-8")).digest()
    return sk.hex(), PrivateKey(sk).public_key.hex()


def emit(obj):
    print(json.dumps(obj), flush=True)


async def send(args):
    if args.from_sk:
        sk = args.from_sk
    else:
        sk, _ = channel_key(args.from_xpub)
    _, to_pk = channel_key(args.to_xpub)
    payload = {"tx": args.psbt}
    label = args.label + ("x" * args.pad_label)
    if label:
        payload["label"] = label
    now = int(time.time())
    created_at = now + args.created_at_offset
    priv = PrivateKey(bytes.fromhex(sk))
    content = priv.encrypt_message(json.dumps(payload), to_pk)
    async with aionostr.Manager(relays=args.relays.split(","), private_key=sk, log=logging.getLogger("aionostr")) as manager:
        eid = await aionostr._add_event(
            manager, kind=KIND, content=content, private_key=sk, created_at=created_at,
            tags=[["p", to_pk], ["expiration", str(created_at + KEEP_DELAY)]])
    emit({"id": eid, "pubkey": priv.public_key.hex()})


async def receive(args):
    own_sk, own_pk = channel_key(args.own_xpub)
    cosigners = {channel_key(x)[1] for x in args.cosigner_xpub}
    priv = PrivateKey(bytes.fromhex(own_sk))
    known = set()
    kept = 0
    query = {"kinds": [KIND], "limit": 100, "#p": [own_pk], "since": int(time.time() - KEEP_DELAY)}

    async def loop():
        nonlocal kept
        async with aionostr.Manager(relays=args.relays.split(","), private_key=own_sk, log=logging.getLogger("aionostr")) as manager:
            await manager.connect()
            emit({"listening": own_pk})
            async for event in manager.get_events(query, single_event=False, only_stored=False):
                now = int(time.time())
                if event.id in known:
                    continue
                if event.pubkey not in cosigners:
                    logging.warning("event from unknown author %s", event.pubkey)
                    continue
                if event.created_at > now + KEEP_DELAY or event.created_at < now - KEEP_DELAY:
                    continue
                known.add(event.id)
                try:
                    message = json.loads(priv.decrypt_message(event.content, event.pubkey))
                    tx = message.get("tx")
                    if not isinstance(tx, str) or not tx:
                        raise ValueError("no tx")
                except Exception as e:  # the plugin drops such a message too
                    logging.warning("dropped %s: %s", event.id, e)
                    continue
                tags = [t[0] for t in event.tags]
                emit({"id": event.id, "from": event.pubkey, "tx": tx, "label": message.get("label", ""),
                      "tags": tags, "kind": event.kind})
                kept += 1
                if kept >= args.count:
                    return

    try:
        await asyncio.wait_for(loop(), timeout=args.timeout)
    except asyncio.TimeoutError:
        pass
    emit({"done": kept})


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vpub")
    v.add_argument("--xpub", required=True)
    s = sub.add_parser("send")
    s.add_argument("--relays", required=True)
    s.add_argument("--from-xpub")
    s.add_argument("--from-sk")
    s.add_argument("--to-xpub", required=True)
    s.add_argument("--psbt", required=True)
    s.add_argument("--label", default="")
    s.add_argument("--pad-label", type=int, default=0)
    s.add_argument("--created-at-offset", type=int, default=0)
    r = sub.add_parser("receive")
    r.add_argument("--relays", required=True)
    r.add_argument("--own-xpub", required=True)
    r.add_argument("--cosigner-xpub", action="append", required=True)
    r.add_argument("--count", type=int, default=1)
    r.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    try:
        if args.cmd == "vpub":
            vp = to_vpub(args.xpub)
            sk, pk = channel_key(vp)
            emit({"vpub": vp, "sk": sk, "pubkey": pk})
        elif args.cmd == "send":
            if not (args.from_xpub or args.from_sk):
                p.error("send needs --from-xpub or --from-sk")
            asyncio.run(send(args))
        else:
            asyncio.run(receive(args))
    except Exception as e:
        logging.exception("failed")
        print(json.dumps({"error": str(e)}), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
