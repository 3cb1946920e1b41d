#!/usr/bin/env node
// nip46_session.mjs: one NIP-46 session with nostr-tools' BunkerSigner
// (nostr-tools 2.25.2), for the interop tests in e2e/nip46. Unlike
// nip46client.mjs (one method per run), it keeps one connection and runs
// several steps, in either of the two NIP-46 flows:
//
//   node nip46_session.mjs --bunker 'bunker://…' [options] STEP…
//       BunkerSigner.fromBunker, then connect() with the URI's secret
//   node nip46_session.mjs --nostrconnect --relay ws://… [--relay …] [options] STEP…
//       prints {"nostrconnect_uri": "nostrconnect://<client-pubkey>?relay=…&secret=…"}
//       on stdout, then BunkerSigner.fromURI waits for the remote signer to
//       answer connect with that secret (NIP-46 "Direct connection initiated
//       by the client"); fromURI then calls switch_relays itself
//
// Options: --sk HEX (client secret key; generated if absent), --timeout SECONDS
// (whole session, default 60), --peer HEX (third party for the nip44 step),
// --psbt-file FILE (for sign_psbt), --perms LIST (nostrconnect perms).
// STEPs, in order: ping, get_public_key, sign_event, nip44 (encrypt a text to
// --peer, then decrypt the result), sign_psbt, sign_psbt_hex, switch_relays, logout.
// sign_psbt sends the PSBT of --psbt-file as it is (base64); sign_psbt_hex sends
// exactly the request Amber and Amethyst send (nips PR #2332, NIP-BC):
// {"id","method":"sign_psbt","params":["<PSBT hex>"]}, and expects hex back.
// The bunker flow's connect carries client metadata {name, url} (NIP-46 "Client
// metadata": nostr-tools puts it fourth, after an empty perms string).
//
// Output: one JSON line per step on stdout:
//   {"step": "<step>", "result": "<string>"} or {"step": …, "error": "<string>"}
//   (the nip44 step prints "ciphertext" and "plaintext" too), then {"done": true}.
// Exit status: 0 when every step got an answer (result or error), 1 on a
// transport failure or timeout, 2 on a usage error.

import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'

import { loadNostrTools, log, out, usage } from './nip46_common.mjs'

const STEPS = ['ping', 'get_public_key', 'sign_event', 'nip44', 'sign_psbt', 'sign_psbt_hex', 'switch_relays', 'logout']

function parseArgs(argv) {
  const o = { timeout: 60, relays: [], steps: [], nostrconnect: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--bunker') o.bunker = value()
    else if (a === '--nostrconnect') o.nostrconnect = true
    else if (a === '--relay') o.relays.push(value())
    else if (a === '--sk') o.sk = value()
    else if (a === '--timeout') o.timeout = Number(value())
    else if (a === '--peer') o.peer = value()
    else if (a === '--psbt-file') o.psbtFile = value()
    else if (a === '--perms') o.perms = value()
    else if (a.startsWith('--')) usage(`unknown option ${a}`)
    else if (STEPS.includes(a)) o.steps.push(a)
    else usage(`unknown step ${a}; steps: ${STEPS.join(', ')}`)
  }
  if (!(o.timeout > 0)) usage('--timeout must be a positive number of seconds')
  if (!o.nostrconnect && !o.bunker) usage('--bunker or --nostrconnect is required')
  if (o.nostrconnect && o.relays.length === 0) usage('--nostrconnect needs at least one --relay')
  if (o.steps.includes('nip44') && !/^[0-9a-f]{64}$/.test(o.peer ?? '')) usage('the nip44 step needs --peer HEX')
  if ((o.steps.includes('sign_psbt') || o.steps.includes('sign_psbt_hex')) && !o.psbtFile) usage('the sign_psbt steps need --psbt-file')
  return o
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const { nip46, pure, pool: poolMod } = loadNostrTools()

  let sk
  if (o.sk === undefined) sk = pure.generateSecretKey()
  else if (/^[0-9a-fA-F]{64}$/.test(o.sk)) sk = Uint8Array.from(Buffer.from(o.sk, 'hex'))
  else usage('--sk must be 64 hex characters')

  const deadline = new Promise((_, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout after ${o.timeout}s`)), o.timeout * 1000)
    t.unref()
  })
  const within = p => Promise.race([p, deadline])
  // BunkerSigner rejects with the signer's error string for an error response
  // and with an Error for transport failures.
  const step = async (name, fn) => {
    try {
      const r = await within(fn())
      out({ step: name, ...(typeof r === 'object' ? r : { result: r }) })
    } catch (e) {
      if (typeof e === 'string') out({ step: name, error: e })
      else throw e
    }
  }

  const pool = new poolMod.SimplePool()
  let signer
  try {
    if (o.nostrconnect) {
      const uri = nip46.createNostrConnectURI({
        clientPubkey: pure.getPublicKey(sk),
        relays: o.relays,
        secret: randomBytes(16).toString('hex'),
        perms: o.perms ? o.perms.split(',') : undefined,
        name: 'cosigner interop test',
      })
      out({ nostrconnect_uri: uri })
      signer = await within(nip46.BunkerSigner.fromURI(sk, uri, { pool, onauth: url => log({ auth_url: url }) }, o.timeout * 1000))
      out({ step: 'connect', result: 'ack', remote_signer: signer.bp.pubkey, relays: signer.bp.relays })
    } else {
      const pointer = await nip46.parseBunkerInput(o.bunker)
      if (!pointer) usage('--bunker is not a valid bunker:// URI')
      signer = nip46.BunkerSigner.fromBunker(sk, pointer, { pool, onauth: url => log({ auth_url: url }) })
      await step('connect', async () => {
        await signer.connect({ name: 'cosigner interop test', url: 'https://interop.example' })
        return 'ack'
      })
    }
    for (const s of o.steps) {
      switch (s) {
        case 'ping':
          await step(s, () => signer.sendRequest('ping', []))
          break
        case 'get_public_key':
          await step(s, () => signer.getPublicKey())
          break
        case 'sign_event':
          await step(s, async () => {
            const ev = await signer.signEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'signed by cosigner through nostr-tools' })
            return { result: JSON.stringify(ev), verified: pure.verifyEvent(ev) }
          })
          break
        case 'nip44':
          await step(s, async () => {
            const text = 'nip44 round trip ' + randomBytes(8).toString('hex')
            const ciphertext = await signer.nip44Encrypt(o.peer, text)
            const plaintext = await signer.nip44Decrypt(o.peer, ciphertext)
            return { result: plaintext === text ? 'ok' : 'mismatch', text, ciphertext, plaintext }
          })
          break
        case 'sign_psbt':
          await step(s, () => signer.sendRequest('sign_psbt', [readFileSync(o.psbtFile, 'utf8').trim()]))
          break
        case 'sign_psbt_hex':
          await step(s, () => signer.sendRequest('sign_psbt', [Buffer.from(readFileSync(o.psbtFile, 'utf8').trim(), 'base64').toString('hex')]))
          break
        case 'switch_relays':
          await step(s, () => signer.sendRequest('switch_relays', []))
          break
        case 'logout':
          await step(s, () => signer.sendRequest('logout', []))
          break
      }
    }
    out({ done: true })
    return 0
  } finally {
    if (signer) await signer.close().catch(() => {})
    pool.destroy()
  }
}

main().then(
  code => process.exit(code),
  err => {
    log({ transport_error: err?.message ?? String(err) })
    process.exit(1)
  },
)
