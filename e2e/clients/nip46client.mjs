#!/usr/bin/env node
// nip46client.mjs: a NIP-46 client built on nostr-tools' BunkerSigner, used
// by the end-to-end tests and the demo as an independent client of the
// cosigner's remote signer.
//
// Usage:
//   node nip46client.mjs --bunker 'bunker://<pubkey>?relay=…&secret=…' \
//        [--sk <hex client secret key>] [--timeout 30] [--no-connect] \
//        <method> [params…]
//   node nip46client.mjs --sk <hex> --pubkey-only
//
// Output: one JSON object on stdout.
//   {"result": "<string>"}   the remote signer answered with a result
//   {"error": "<string>"}    the remote signer answered with an error
//   either one carries "connect_error" when the connect sent first was
//   refused (the method is sent anyway: the client key may already be
//   connected from an earlier run whose secret is now spent)
//   {"pubkey": "<hex>"}      for --pubkey-only
// Logs go to stderr as JSON lines: {"client_sk": …} when a key was generated
// (test keys only), {"auth_url": …} when the signer holds a request.
//
// Exit status: 0 when the remote signer answered (result or error),
// 1 on transport failure or timeout, 2 on a usage error.
//
// Before <method>, the client sends connect [remote-signer-pubkey, secret]
// unless --no-connect is given or <method> is itself "connect" (then the
// params given are sent, or [pubkey, secret] from the URI if none). A bunker
// secret is good for one connect: later runs with the same --sk may pass
// --no-connect to skip the refused connect. A param "-" is replaced by
// standard input (for long PSBTs).
//
// Modules (found by nip46_common.mjs): nostr-tools 2.25.2 and ws 8.23.0 are looked up in
// $NIP46_NODE_MODULES, then internal/devnet/node/node_modules of this
// repository (where scripts/install-tools.sh puts them), then next to this
// script.

import { readFileSync } from 'node:fs'

import { loadNostrTools, log, out, usage } from './nip46_common.mjs'

function parseArgs(argv) {
  const opts = { timeout: 30, connect: true, pubkeyOnly: false, rest: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (opts.rest.length > 0) opts.rest.push(a) // after <method>, everything is a param
    else if (a === '--bunker') opts.bunker = value()
    else if (a === '--sk') opts.sk = value()
    else if (a === '--timeout') opts.timeout = Number(value())
    else if (a === '--no-connect') opts.connect = false
    else if (a === '--pubkey-only') opts.pubkeyOnly = true
    else if (a === '--help' || a === '-h') usage('see the header of nip46client.mjs')
    else if (a.startsWith('--')) usage(`unknown option ${a}`)
    else opts.rest.push(a)
  }
  if (!(opts.timeout > 0)) usage('--timeout must be a positive number of seconds')
  return opts
}

function secretKey(hex, pure) {
  if (hex === undefined) {
    const sk = pure.generateSecretKey()
    log({ client_sk: Buffer.from(sk).toString('hex') })
    return sk
  }
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) usage('--sk must be 64 hex characters')
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const { nip46, pure, pool: poolMod } = loadNostrTools()

  const sk = secretKey(opts.sk, pure)
  if (opts.pubkeyOnly) {
    out({ pubkey: pure.getPublicKey(sk) })
    return 0
  }
  if (!opts.bunker) usage('--bunker is required')
  const [method, ...rawParams] = opts.rest
  if (!method) usage('a NIP-46 method is required, e.g. ping')
  const params = rawParams.map(p => (p === '-' ? readFileSync(0, 'utf8').trim() : p))

  const pointer = await nip46.parseBunkerInput(opts.bunker)
  if (!pointer) usage('--bunker is not a valid bunker:// URI')

  const pool = new poolMod.SimplePool()
  const signer = nip46.BunkerSigner.fromBunker(sk, pointer, {
    pool,
    onauth: url => log({ auth_url: url }),
  })

  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${opts.timeout}s`)), opts.timeout * 1000)
  })
  // BunkerSigner rejects with the signer's error string for an error
  // response, and with an Error object for transport failures.
  const call = async (m, p) => {
    try {
      return { result: await Promise.race([signer.sendRequest(m, p), timeout]) }
    } catch (e) {
      if (typeof e === 'string') return { error: e }
      throw e
    }
  }

  try {
    if (method === 'connect') {
      out(await call('connect', params.length ? params : [pointer.pubkey, pointer.secret || '']))
      return 0
    }
    let connectError
    if (opts.connect) {
      // A refused connect is not fatal: a client key that connected in an
      // earlier run may still be authorized (its secret is then spent).
      const r = await call('connect', [pointer.pubkey, pointer.secret || ''])
      if (r.error !== undefined) {
        connectError = r.error
        log({ connect_error: r.error })
      }
    }
    const answer = await call(method, params)
    if (connectError !== undefined) answer.connect_error = connectError
    out(answer)
    return 0
  } finally {
    clearTimeout(timer)
    await signer.close()
    pool.destroy()
  }
}

main().then(
  code => process.exit(code),
  err => {
    log({ transport_error: err?.message ?? String(err), errors: err?.errors?.map(e => e?.message ?? String(e)) })
    process.exit(1)
  },
)
