#!/usr/bin/env node
// nip46_discover.mjs: remote signer discovery as nostr-tools 2.25.2 does it
// (fetchBunkerProviders, NIP-46 appendix): query kind 31990 events with
// #k 24133 on the relays, read the nip05 of each event's content, fetch that
// NIP-05 nostr.json and keep the announcements whose nostr.json names the
// event's author with relays. For the tests, the nostr.json "served" at every
// https URL is the file given (nostr-tools' useFetchImplementation), so no web
// server is needed.
//
//   node nip46_discover.mjs --relay ws://… [--relay …] --nostr-json FILE [--timeout S]
//
// Output: one JSON line on stdout: {"providers": [{"pubkey", "relays", "nip05",
// "name"}…], "events": [<the kind-31990 events read>…]}.
// Exit status: 0 when the query ran, 1 on a failure or timeout, 2 on a usage error.

import { readFileSync } from 'node:fs'

import { loadNostrTools, log, out, usage } from './nip46_common.mjs'

function parseArgs(argv) {
  const o = { relays: [], timeout: 30 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--relay') o.relays.push(value())
    else if (a === '--nostr-json') o.nostrJSON = value()
    else if (a === '--timeout') o.timeout = Number(value())
    else usage(`unknown argument ${a}`)
  }
  if (o.relays.length === 0 || !o.nostrJSON || !(o.timeout > 0)) usage('--relay and --nostr-json are required')
  return o
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const { nip46, pool: poolMod } = loadNostrTools()
  const doc = readFileSync(o.nostrJSON, 'utf8')
  const fetched = []
  nip46.useFetchImplementation(async url => {
    fetched.push(url)
    return { json: async () => JSON.parse(doc) }
  })
  const pool = new poolMod.SimplePool()
  const timer = setTimeout(() => {
    log({ error: `timeout after ${o.timeout}s` })
    process.exit(1)
  }, o.timeout * 1000)
  try {
    const events = await pool.querySync(o.relays, { kinds: [31990], '#k': ['24133'] })
    const providers = await nip46.fetchBunkerProviders(pool, o.relays)
    out({
      providers: providers.map(p => ({ pubkey: p.bunkerPointer.pubkey, relays: p.bunkerPointer.relays, nip05: p.nip05, name: p.name })),
      events,
      fetched,
    })
    return 0
  } finally {
    clearTimeout(timer)
    pool.destroy()
  }
}

main().then(
  code => process.exit(code),
  err => {
    log({ error: err?.message ?? String(err) })
    process.exit(1)
  },
)
