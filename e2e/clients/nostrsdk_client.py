#!/usr/bin/env python3
"""nostrsdk_client.py: one NIP-46 session with rust-nostr's NostrConnect client
(PyPI nostr-sdk, pinned in scripts/requirements.txt), for the interop tests in
e2e/nip46.

Usage:
    python nostrsdk_client.py --bunker 'bunker://…' [--sk HEX] [--timeout S]
                              [--peer HEX] STEP…
    python nostrsdk_client.py --nostrconnect --relay ws://… [--relay …]
                              [--perms LIST] [--sk HEX] … STEP…
        prints {"nostrconnect_uri": "nostrconnect://<client-pubkey>?relay=…&secret=…"}
        first, then waits (in its first step) for the remote signer to answer
        connect with that secret (NIP-46 client-initiated connection)

NostrConnect connects lazily: the first step makes it send connect
[remote-signer-pubkey, secret] with the URI's secret (rust-nostr's
"bootstrap"), then the step's own request. STEPs, in order:
    get_public_key  the user pubkey (NIP-46 get_public_key)
    sign_event      a kind-1 note signed by the remote signer
    nip44           nip44_encrypt a text to --peer, then nip44_decrypt it
    sign_psbt       sign_psbt of --psbt-file (as given) in the same session. The
                    NostrConnect client cannot send it: it has no generic request
                    method (nostr-connect 0.45's send_request is private and its
                    NostrConnectRequest enum has no variant for other methods;
                    the Python bindings export neither). So the request is built
                    as a raw NIP-46 request with rust-nostr's own primitives —
                    nip44_encrypt, EventBuilder(kind 24133, p tag), Client —
                    under the same client keys, to the remote signer NostrConnect
                    connected to, and its response read with Client's
                    notifications (auth_url answers are waited past)

Output: one JSON line per step on stdout:
    {"step": S, "result": "<string>"} or {"step": S, "error": "<string>"}
    (nip44 adds "ciphertext" and "plaintext"; sign_event adds "verified"),
then {"done": true}; every line carries "at", seconds since the start. Exit status 0 when every step ran (a signer's error answer
is a result, not a failure), 1 on a timeout, 2 on a usage error.
"""

import argparse
import asyncio
import json
import secrets
import sys
import time
import urllib.parse
from datetime import timedelta

import nostr_sdk as ns

STEPS = ("get_public_key", "sign_event", "nip44", "sign_psbt")


START = time.monotonic()


def out(obj):
    obj.setdefault("at", round(time.monotonic() - START, 3))  # seconds since start, for the test log
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_step(name, coro):
    try:
        r = await coro
    except ns.NostrSdkError as e:  # the signer's error answer, or a timeout
        msg = str(e)
        if len(msg) >= 2 and msg[0] == msg[-1] and msg[0] in "'\"":
            msg = msg[1:-1]  # str() of the FFI error quotes its message
        out({"step": name, "error": msg})
        return
    if isinstance(r, dict):
        out({"step": name, **r})
    else:
        out({"step": name, "result": r})


async def main(argv):
    p = argparse.ArgumentParser(description="rust-nostr NostrConnect session")
    p.add_argument("--bunker")
    p.add_argument("--nostrconnect", action="store_true")
    p.add_argument("--relay", action="append", default=[])
    p.add_argument("--perms", default="")
    p.add_argument("--sk", help="client secret key, hex (generated if absent)")
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--peer", help="third-party pubkey (hex) for the nip44 step")
    p.add_argument("--psbt-file", help="the PSBT for the sign_psbt step")
    p.add_argument("steps", nargs="*", choices=STEPS)
    a = p.parse_args(argv)
    if "nip44" in a.steps and not a.peer:
        p.error("the nip44 step needs --peer")
    if "sign_psbt" in a.steps and not a.psbt_file:
        p.error("the sign_psbt step needs --psbt-file")
    if bool(a.bunker) == a.nostrconnect or (a.nostrconnect and not a.relay):
        p.error("give --bunker URI, or --nostrconnect with at least one --relay")

    keys = ns.Keys.parse(a.sk) if a.sk else ns.Keys.generate()
    if a.nostrconnect:
        # nostr-sdk 0.45 parses only the older form of the URI: it requires a JSON "metadata"
        # param (current NIP-46 uses name=, url=, image=) and refuses the URI without it.
        q = [("relay", r) for r in a.relay] + [("metadata", json.dumps({"name": "cosigner interop test"})),
                                               ("secret", secrets.token_hex(16))]
        if a.perms:
            q.append(("perms", a.perms))
        text = "nostrconnect://" + keys.public_key().to_hex() + "?" + urllib.parse.urlencode(q)
        out({"nostrconnect_uri": text})
        uri = ns.NostrConnectUri.parse(text)
    else:
        uri = ns.NostrConnectUri.parse(a.bunker)
    signer = ns.NostrConnect(uri, keys, timedelta(seconds=a.timeout), None)

    async def get_public_key():
        pk = await signer.get_public_key_async()
        return pk.to_hex() if pk is not None else ""

    async def sign_event():
        unsigned = ns.EventBuilder(ns.Kind(1), "signed by cosigner through rust-nostr").finalize_unsigned(
            await signer.get_public_key_async())
        ev = await signer.sign_event_async(unsigned)
        if ev is None:
            return {"result": "", "verified": False}
        return {"result": ev.as_json(), "verified": ev.verify()}

    async def nip44():
        peer = ns.PublicKey.parse(a.peer)
        text = "nip44 round trip " + secrets.token_hex(8)
        ct = await signer.nip44_encrypt_async(peer, text)
        pt = await signer.nip44_decrypt_async(peer, ct)
        return {"result": "ok" if pt == text else "mismatch", "text": text, "ciphertext": ct, "plaintext": pt}

    async def sign_psbt():
        with open(a.psbt_file, encoding="utf-8") as f:
            psbt = f.read().strip()
        # The remote signer NostrConnect connected to (bootstrapped by the earlier steps).
        remote = ns.PublicKey.parse(urllib.parse.urlparse(str(await signer.bunker_uri())).netloc)
        client = ns.Client()
        for r in signer.relays():
            await client.add_relay(r)
        await client.connect()
        try:
            stream = client.notifications()
            await client.subscribe(ns.ReqTarget.auto([ns.Filter().kind(ns.Kind(24133)).pubkey(keys.public_key()).limit(0)]))
            req_id = "raw-" + secrets.token_hex(8)
            body = json.dumps({"id": req_id, "method": "sign_psbt", "params": [psbt]})
            content = ns.nip44_encrypt(keys.secret_key(), remote, body, ns.Nip44Version.V2)
            ev = ns.EventBuilder(ns.Kind(24133), content).tags([ns.Tag.public_key(remote)]).finalize(keys)
            await client.send_event(ev)
            while True:
                n = await asyncio.wait_for(stream.next(), a.timeout)
                if n is None:
                    raise ns.NostrSdkError.Generic("notification stream ended")
                if not isinstance(n, ns.ClientNotification.NEW_EVENT):
                    continue
                got = n.event
                if got.kind().as_u16() != 24133 or got.author().to_hex() != remote.to_hex():
                    continue
                msg = json.loads(ns.nip44_decrypt(keys.secret_key(), got.author(), got.content()))
                if msg.get("id") != req_id or msg.get("result") == "auth_url":
                    continue
                if msg.get("error"):
                    return {"error": msg["error"], "sent_as": "raw"}
                return {"result": msg.get("result", ""), "sent_as": "raw"}
        finally:
            await client.shutdown()

    fns = {"get_public_key": get_public_key, "sign_event": sign_event, "nip44": nip44, "sign_psbt": sign_psbt}
    for s in a.steps:
        await run_step(s, fns[s]())
    out({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
