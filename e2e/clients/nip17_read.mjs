#!/usr/bin/env node
// nip17_read.mjs: an operator's NIP-17 inbox built on nostr-tools (nip17, nip59, SimplePool),
// used by the notify integration tests as an independent reader of the cosigner's direct
// messages.
//
// Usage:
//   node nip17_read.mjs --sk <hex operator secret key> --relays ws://a,ws://b \
//        [--count 1] [--timeout 30] [--inbox ws://c --inbox-on ws://a,ws://b]
//
// With --inbox, it first publishes the operator's kind 10050 DM relay list naming the
// --inbox relays (comma-separated) to the --inbox-on relays, and logs {"published_10050": id}.
// Then it subscribes to kind 1059 events p-tagged to the operator on --relays, logs
// {"ready": true} once every relay has sent EOSE, and for each gift wrap unwraps it with
// nostr-tools' nip17.unwrapEvent (which checks the seal's kind and signature and that the seal
// and the rumor have the same author) and prints one JSON line on stdout:
//   {"wrap": {id, pubkey, created_at, kind, tags}, "rumor": {id, pubkey, created_at, kind,
//    tags, content, sig}, "rumor_id_ok": <the rumor's id is the hash of its fields>}
// A wrap that does not unwrap is printed as {"wrap", "unwrap_error"}.
//
// Exit status: 0 after --count messages were unwrapped, 1 on timeout or transport failure,
// 2 on a usage error. Logs go to stderr as JSON lines.
//
// Modules: nostr-tools 2.25.2 and ws 8.23.0, found by nip46_common.mjs's loadNostrTools.

import { loadNostrTools, log, out, usage } from './nip46_common.mjs'

function parseArgs(argv) {
  const opts = { count: 1, timeout: 30, relays: [], inbox: [], inboxOn: [] }
  const list = s => s.split(',').map(x => x.trim()).filter(Boolean)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--sk') opts.sk = value()
    else if (a === '--relays') opts.relays = list(value())
    else if (a === '--count') opts.count = Number(value())
    else if (a === '--timeout') opts.timeout = Number(value())
    else if (a === '--inbox') opts.inbox = list(value())
    else if (a === '--inbox-on') opts.inboxOn = list(value())
    else usage(`unknown argument ${a}`)
  }
  if (!/^[0-9a-f]{64}$/.test(opts.sk ?? '')) usage('--sk must be a 64-character hex secret key')
  if (opts.relays.length === 0) usage('--relays is required')
  if (!(opts.count >= 1) || !(opts.timeout > 0)) usage('--count and --timeout must be positive')
  if (opts.inbox.length > 0 && opts.inboxOn.length === 0) usage('--inbox needs --inbox-on')
  return opts
}

const opts = parseArgs(process.argv.slice(2))
const { nip17, pure, pool: poolMod } = loadNostrTools()
const sk = Uint8Array.from(Buffer.from(opts.sk, 'hex'))
const me = pure.getPublicKey(sk)
const pool = new poolMod.SimplePool()

const timer = setTimeout(() => {
  log({ timeout: true, after_s: opts.timeout })
  process.exit(1)
}, opts.timeout * 1000)

if (opts.inbox.length > 0) {
  const ev = pure.finalizeEvent({
    kind: 10050,
    created_at: Math.floor(Date.now() / 1000),
    tags: opts.inbox.map(u => ['relay', u]),
    content: '',
  }, sk)
  const results = await Promise.allSettled(pool.publish(opts.inboxOn, ev))
  const accepted = results.filter(r => r.status === 'fulfilled').length
  if (accepted === 0) {
    log({ publish_10050_failed: results.map(r => String(r.reason)) })
    process.exit(1)
  }
  log({ published_10050: ev.id, accepted })
}

let got = 0
const seen = new Set()
pool.subscribeMany(opts.relays, { kinds: [1059], '#p': [me] }, {
  oneose() { log({ ready: true }) },
  onevent(wrap) {
    if (seen.has(wrap.id)) return
    seen.add(wrap.id)
    const w = { id: wrap.id, pubkey: wrap.pubkey, created_at: wrap.created_at, kind: wrap.kind, tags: wrap.tags }
    let rumor
    try {
      rumor = nip17.unwrapEvent(wrap, sk)
    } catch (err) {
      out({ wrap: w, unwrap_error: String(err?.message ?? err) })
      return
    }
    out({ wrap: w, rumor: { id: rumor.id, pubkey: rumor.pubkey, created_at: rumor.created_at, kind: rumor.kind, tags: rumor.tags, content: rumor.content, sig: rumor.sig }, rumor_id_ok: pure.getEventHash(rumor) === rumor.id })
    if (++got >= opts.count) {
      clearTimeout(timer)
      pool.close(opts.relays)
      process.exit(0)
    }
  },
})
