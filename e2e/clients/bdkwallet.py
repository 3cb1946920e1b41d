#!/usr/bin/env python3
"""bdkwallet.py: a BDK (bdkpython 3.1.1) coordinator wallet for end-to-end
tests and the demo. It holds one key (key "B") of a 2-of-3 multisig
(wsh, sh(wsh) or taproot tr(NUMS,multi_a(…)) — any descriptor BDK knows), builds
PSBTs, signs its own share, and finalizes and broadcasts once the co-signer
has added its signature.

Every subcommand prints exactly one JSON object on stdout; logs and errors
go to stderr. Exit status: 0 success, 1 failure, 2 usage error.

Subcommands:

  keys --network regtest [--mnemonic "words…"]
      New (or restored) BIP-39 mnemonic and its BIP-48 P2WSH account key
      m/48'/<coin>'/0'/2' →
      {"mnemonic", "xprv_key": "[fp/48h/1h/0h/2h]tprv…",
       "xpub_key": "[fp/48h/1h/0h/2h]tpub…", "fingerprint"}

  address  --descriptor D --network regtest --index N [--change]
      Receive (or change) address; no Electrum needed
      → {"address", "index", "change"}
  balance  --descriptor D --electrum tcp://127.0.0.1:PORT --network regtest
      → {"confirmed": sat, "unconfirmed": sat, "immature": sat,
         "utxos": [{"outpoint", "txid", "vout", "amount", "keychain",
                    "index", "confirmed", "height"}]}
  build    --descriptor D --electrum URL --network regtest
           --to ADDR --amount SAT --feerate SATVB [--global-xpubs]
      PSBT paying ADDR, change to the change branch, signed by key B only
      (BDK fills witness_utxo, witness_script and the BIP32 derivations of
      all keys) → {"psbt": base64, "fee": sat, "txid",
      "inputs": [{"outpoint", "amount", "bip32_derivations", "partial_sigs",
                  "has_witness_script"}],
      (partial_sigs counts every signature: ECDSA partial signatures and
      taproot script-path signatures, PSBT_IN_TAP_SCRIPT_SIG)
      "outputs": [{"address", "amount", "is_change"}]}
  sign     --descriptor D --network regtest --psbt BASE64
      Adds the signatures of the private keys in D without finalizing
      (a stand-in for another co-signer in tests) → {"psbt", "partial_sigs"}
  finalize --descriptor D --electrum URL --network regtest --psbt BASE64
      Finalizes (needs the threshold of partial signatures), extracts and
      broadcasts → {"txid", "fee", "vsize", "weight"}

The wallet descriptor D is ONE multipath descriptor (BIP-389), receive
branch /0/*, change branch /1/*, with key B as a private key expression and
the other keys as public ones, for example

  wsh(sortedmulti(2,[aaaaaaaa/48h/1h/0h/2h]tpubA…/<0;1>/*,
                    [bbbbbbbb/48h/1h/0h/2h]tprvB…/<0;1>/*,
                    [cccccccc/48h/1h/0h/2h]tpubC…/<0;1>/*))

(a checksum is optional). BDK 3.1.1 refuses multipath descriptors holding
a private key, so the script splits D into its receive (/0/*) and change
(/1/*) descriptors and builds the wallet from those. The wallet lives in
memory: each call rebuilds it from D and does a full scan through the
Electrum server (stop gap 20, --stop-gap to change), so calls are
independent and need no files.
"""
import argparse
import base64
import json
import sys

import bdkpython as bdk

STOP_GAP = 20
# Electrum requests per batch: fewer round trips per full scan.
BATCH_SIZE = 100

NETWORKS = {
    "bitcoin": (bdk.Network.BITCOIN, bdk.NetworkKind.MAIN, 0),
    "testnet": (bdk.Network.TESTNET, bdk.NetworkKind.TEST, 1),
    "testnet4": (bdk.Network.TESTNET4, bdk.NetworkKind.TEST, 1),
    "signet": (bdk.Network.SIGNET, bdk.NetworkKind.TEST, 1),
    "regtest": (bdk.Network.REGTEST, bdk.NetworkKind.TEST, 1),
}


class Failure(Exception):
    """An error to report on stderr with exit status 1."""


def log(msg: str) -> None:
    print(f"bdkwallet: {msg}", file=sys.stderr, flush=True)


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def h_origin(key: str) -> str:
    """Write the hardened markers of a key origin as h (BDK prints ')."""
    if key.startswith("["):
        end = key.index("]")
        return key[:end].replace("'", "h") + key[end:]
    return key


# ---------------------------------------------------------------- keys

def cmd_keys(args) -> dict:
    _, kind, coin = NETWORKS[args.network]
    if args.mnemonic:
        mnemonic = bdk.Mnemonic.from_string(args.mnemonic)
    else:
        mnemonic = bdk.Mnemonic(bdk.WordCount.WORDS12)
    root = bdk.DescriptorSecretKey(kind, mnemonic, None)
    account = root.derive(bdk.DerivationPath(f"m/48h/{coin}h/0h/2h"))
    xpub = account.as_public()
    return {
        "mnemonic": str(mnemonic),
        "xprv_key": h_origin(str(account)),
        "xpub_key": h_origin(str(xpub)),
        "fingerprint": xpub.master_fingerprint(),
    }


# ---------------------------------------------------------------- wallet

def split_multipath(desc: str) -> tuple:
    """Expand /<0;1>/ (BIP-389) into the receive and change descriptors.

    BDK 3.1.1 refuses a multipath descriptor that holds a private key
    ("Miniscript error"), so the wallet is built from the two single-path
    descriptors instead. The checksum, if any, is dropped: it covers the
    multipath text, and BDK computes its own.
    """
    body = desc.split("#", 1)[0].strip()
    if body.count("/<0;1>/") == 0 or "<" in body.replace("/<0;1>/", ""):
        raise Failure("--descriptor must use the multipath step /<0;1>/* on every key (receive and change)")
    return body.replace("/<0;1>/", "/0/"), body.replace("/<0;1>/", "/1/")


def open_wallet(args):
    network, kind, _ = NETWORKS[args.network]
    receive, change = split_multipath(args.descriptor)
    try:
        wallet = bdk.Wallet(bdk.Descriptor(receive, kind), bdk.Descriptor(change, kind),
                            network, bdk.Persister.new_in_memory())
    except Exception as e:  # DescriptorError, Miniscript, CreateWithPersistError
        raise Failure(f"bad --descriptor: {type(e).__name__}: {e}") from e
    return wallet, network


def scan(wallet, url: str, stop_gap: int = STOP_GAP):
    """Full scan through Electrum; returns the client for later use.

    Previous outputs of foreign inputs are not fetched (fetch_prev_txouts
    False): spending, balances and PSBT fees only need the wallet's own
    outputs, and fetching them costs round trips.
    """
    try:
        client = bdk.ElectrumClient(url)
        request = wallet.start_full_scan().build()
        update = client.full_scan(request, stop_gap, BATCH_SIZE, False)
    except Exception as e:
        raise Failure(f"electrum {url}: {e}") from e
    wallet.apply_update(update)
    return client


def need_electrum(args) -> None:
    if not args.electrum:
        raise Failure(f"{args.command} needs --electrum tcp://HOST:PORT")


def cmd_address(args) -> dict:
    wallet, _ = open_wallet(args)
    kind = bdk.KeychainKind.INTERNAL if args.change else bdk.KeychainKind.EXTERNAL
    info = wallet.peek_address(kind, args.index)
    return {"address": str(info.address), "index": info.index, "change": args.change}


def utxo_json(u) -> dict:
    pos = u.chain_position
    height = pos.confirmation_block_time.block_id.height if pos.is_confirmed() else None
    return {
        "outpoint": f"{u.outpoint.txid}:{u.outpoint.vout}",
        "txid": str(u.outpoint.txid),
        "vout": u.outpoint.vout,
        "amount": u.txout.value.to_sat(),
        "keychain": "internal" if u.keychain == bdk.KeychainKind.INTERNAL else "external",
        "index": u.derivation_index,
        "confirmed": pos.is_confirmed(),
        "height": height,
    }


def cmd_balance(args) -> dict:
    need_electrum(args)
    wallet, _ = open_wallet(args)
    scan(wallet, args.electrum, args.stop_gap)
    bal = wallet.balance()
    return {
        "confirmed": bal.confirmed.to_sat(),
        "unconfirmed": bal.trusted_pending.to_sat() + bal.untrusted_pending.to_sat(),
        "immature": bal.immature.to_sat(),
        "utxos": [utxo_json(u) for u in wallet.list_unspent()],
    }


def sign_options(try_finalize: bool) -> bdk.SignOptions:
    return bdk.SignOptions(
        trust_witness_utxo=False,
        assume_height=None,
        allow_all_sighashes=False,
        try_finalize=try_finalize,
        sign_with_tap_internal_key=True,
        allow_grinding=True,
    )


def _compact_size(b: bytes, i: int) -> tuple:
    n = b[i]
    if n < 0xfd:
        return n, i + 1
    width = {0xfd: 2, 0xfe: 4, 0xff: 8}[n]
    return int.from_bytes(b[i + 1:i + 1 + width], "little"), i + 1 + width


def input_maps(psbt_b64: str, n_inputs: int) -> list:
    """The key-value maps of a PSBT's inputs (BIP-174 serialization), as
    lists of (key type, key data, value). bdkpython 3.1.1 cannot hand out
    inputs that carry taproot script signatures (Psbt.input() raises
    "unhashable type: 'TapScriptSigKey'"), so the summary reads the
    serialization itself."""
    b = base64.b64decode(psbt_b64)
    i = 5  # magic

    def read_map(i):
        pairs = []
        while True:
            klen, i = _compact_size(b, i)
            if klen == 0:
                return pairs, i
            key = b[i:i + klen]
            i += klen
            vlen, i = _compact_size(b, i)
            pairs.append((key[0], key[1:], b[i:i + vlen]))
            i += vlen

    _, i = read_map(i)  # global
    maps = []
    for _ in range(n_inputs):
        m, i = read_map(i)
        maps.append(m)
    return maps


# BIP-174/371 input key types.
IN_WITNESS_UTXO, IN_PARTIAL_SIG, IN_WITNESS_SCRIPT, IN_BIP32 = 0x01, 0x02, 0x05, 0x06
IN_TAP_KEY_SIG, IN_TAP_SCRIPT_SIG, IN_TAP_BIP32 = 0x13, 0x14, 0x16


def signatures(pairs) -> int:
    """Signatures on a PSBT input: ECDSA partial signatures (wsh, sh(wsh))
    plus taproot key-path and script-path signatures (BIP-371)."""
    return sum(1 for t, _, _ in pairs if t in (IN_PARTIAL_SIG, IN_TAP_KEY_SIG, IN_TAP_SCRIPT_SIG))


def signature_counts(psbt) -> list:
    b64 = psbt.serialize()
    return [signatures(m) for m in input_maps(b64, len(psbt.extract_tx_unchecked_fee_rate().input()))]


def psbt_summary(wallet, network, psbt) -> dict:
    """Inputs and outputs of a PSBT as the wallet sees them."""
    tx = psbt.extract_tx_unchecked_fee_rate()
    inputs = []
    for txin, pairs in zip(tx.input(), input_maps(psbt.serialize(), len(tx.input()))):
        utxo = [v for t, _, v in pairs if t == IN_WITNESS_UTXO]
        inputs.append({
            "outpoint": f"{txin.previous_output.txid}:{txin.previous_output.vout}",
            "amount": int.from_bytes(utxo[0][:8], "little") if utxo else None,
            "bip32_derivations": sum(1 for t, _, _ in pairs if t in (IN_BIP32, IN_TAP_BIP32)),
            "partial_sigs": signatures(pairs),
            "has_witness_script": any(t == IN_WITNESS_SCRIPT for t, _, _ in pairs),
        })
    outputs = []
    for txout in tx.output():
        try:
            addr = str(bdk.Address.from_script(txout.script_pubkey, network))
        except Exception:
            addr = None
        where = wallet.derivation_of_spk(txout.script_pubkey)
        outputs.append({
            "address": addr,
            "amount": txout.value.to_sat(),
            "is_change": where is not None and where.keychain == bdk.KeychainKind.INTERNAL,
        })
    return {"txid": str(tx.compute_txid()), "inputs": inputs, "outputs": outputs}


def cmd_build(args) -> dict:
    need_electrum(args)
    wallet, network = open_wallet(args)
    scan(wallet, args.electrum, args.stop_gap)
    try:
        to = bdk.Address(args.to, network)
    except Exception as e:
        raise Failure(f"bad --to address for {args.network}: {e}") from e
    builder = (bdk.TxBuilder()
               .add_recipient(to.script_pubkey(), bdk.Amount.from_sat(args.amount))
               .fee_rate(bdk.FeeRate.from_sat_per_vb(args.feerate)))
    if args.global_xpubs:
        builder = builder.add_global_xpubs()
    try:
        psbt = builder.finish(wallet)
    except Exception as e:
        raise Failure(f"cannot build the transaction: {e}") from e
    # Sign key B's share only; with one of the required signatures the
    # inputs stay unfinalized for the co-signer.
    wallet.sign(psbt, sign_options(try_finalize=False))
    out = {"psbt": psbt.serialize(), "fee": psbt.fee()}
    out.update(psbt_summary(wallet, network, psbt))
    missing = [i for i, inp in enumerate(out["inputs"]) if inp["partial_sigs"] < 1]
    if missing:
        raise Failure(f"BDK did not sign inputs {missing}: is key B in --descriptor a private key?")
    return out


def cmd_sign(args) -> dict:
    """Add the signatures of every private key in --descriptor, unfinalized
    (stands in for another human co-signer in tests)."""
    wallet, network = open_wallet(args)
    if args.electrum:
        scan(wallet, args.electrum, args.stop_gap)
    psbt = decode_psbt(args.psbt)
    before = signature_counts(psbt)
    wallet.sign(psbt, sign_options(try_finalize=False))
    after = signature_counts(psbt)
    if after == before:
        raise Failure(f"no signature added (partial signatures per input: {after})")
    return {"psbt": psbt.serialize(), "partial_sigs": after}


def decode_psbt(text: str):
    try:
        base64.b64decode(text, validate=True)
        return bdk.Psbt(text)
    except Exception as e:
        raise Failure(f"bad --psbt (want base64 BIP-174): {e}") from e


def cmd_finalize(args) -> dict:
    need_electrum(args)
    wallet, network = open_wallet(args)
    client = scan(wallet, args.electrum, args.stop_gap)
    psbt = decode_psbt(args.psbt)
    fee = psbt.fee()
    result = psbt.finalize()
    if not result.could_finalize:
        sigs = signature_counts(psbt)
        errors = [str(e) for e in (result.errors or [])]
        raise Failure(f"cannot finalize the PSBT (partial signatures per input: {sigs}): {errors}")
    try:
        tx = result.psbt.extract_tx()
    except Exception as e:
        raise Failure(f"cannot extract the transaction: {e}") from e
    try:
        txid = client.transaction_broadcast(tx)
    except Exception as e:
        raise Failure(f"broadcast through {args.electrum} failed: {e}") from e
    return {"txid": str(txid), "fee": fee, "vsize": tx.vsize(), "weight": tx.weight()}


# ---------------------------------------------------------------- main

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bdkwallet.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, electrum=True):
        sp.add_argument("--network", choices=sorted(NETWORKS), default="regtest")
        sp.add_argument("--descriptor", required=True,
                        help="multipath wallet descriptor, key B as a private key expression")
        sp.add_argument("--electrum", required=False,
                        help="Electrum server, e.g. tcp://127.0.0.1:50001" + ("" if electrum else " (unused)"))
        sp.add_argument("--stop-gap", type=int, default=STOP_GAP,
                        help=f"full scan stop gap (default {STOP_GAP})")

    k = sub.add_parser("keys", help="new BIP-39 mnemonic and BIP-48 P2WSH account key")
    k.add_argument("--network", choices=sorted(NETWORKS), default="regtest")
    k.add_argument("--mnemonic", help="restore from these words instead of generating")

    a = sub.add_parser("address", help="receive (or --change) address at an index")
    common(a, electrum=False)
    a.add_argument("--index", type=int, required=True)
    a.add_argument("--change", action="store_true")

    common(sub.add_parser("balance", help="confirmed/unconfirmed balance and UTXOs"))

    b = sub.add_parser("build", help="build a PSBT and sign key B's share")
    common(b)
    b.add_argument("--to", required=True)
    b.add_argument("--amount", type=int, required=True, help="sat")
    b.add_argument("--feerate", type=int, required=True, help="sat/vB")
    b.add_argument("--global-xpubs", action="store_true", help="add the xpubs as PSBT global xpubs")

    s = sub.add_parser("sign", help="add the signatures of the private keys in --descriptor (no finalizing)")
    common(s, electrum=False)
    s.add_argument("--psbt", required=True, help="base64 PSBT")

    f = sub.add_parser("finalize", help="finalize a co-signed PSBT and broadcast it")
    common(f)
    f.add_argument("--psbt", required=True, help="base64 PSBT")
    return p


COMMANDS = {
    "keys": cmd_keys,
    "address": cmd_address,
    "balance": cmd_balance,
    "build": cmd_build,
    "sign": cmd_sign,
    "finalize": cmd_finalize,
}


def main() -> int:
    args = parser().parse_args()
    try:
        emit(COMMANDS[args.command](args))
    except Failure as e:
        log(f"{args.command}: {e}")
        return 1
    except Exception as e:  # an unexpected bdk error: still one clear line
        log(f"{args.command}: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
