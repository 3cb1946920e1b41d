// nip46_common.mjs: what nip46client.mjs, nip46_session.mjs and nip17_read.mjs share: finding
// nostr-tools and ws, and writing JSON lines.
//
// Modules: nostr-tools 2.25.2 and ws 8.23.0 are looked up in
// $NIP46_NODE_MODULES, then internal/devnet/node/node_modules of this
// repository (where scripts/install-tools.sh puts them), then next to this
// script.

import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

// loadNostrTools returns nostr-tools' nip46, nip17, pure and pool modules and ws, with
// ws installed as the WebSocket implementation (Node 20 has no global one;
// nostr-tools needs one). It throws when the modules are not found.
export function loadNostrTools() {
  const candidates = [
    process.env.NIP46_NODE_MODULES,
    resolve(here, '../../internal/devnet/node/node_modules'),
    join(here, 'node_modules'),
  ].filter(Boolean)
  for (const dir of candidates) {
    if (existsSync(join(dir, 'nostr-tools')) && existsSync(join(dir, 'ws'))) {
      const require = createRequire(join(dir, '..', 'resolve-from-here.js'))
      const mods = {
        nip46: require('nostr-tools/nip46'),
        nip17: require('nostr-tools/nip17'),
        pure: require('nostr-tools/pure'),
        pool: require('nostr-tools/pool'),
        ws: require('ws'),
      }
      globalThis.WebSocket ??= mods.ws.WebSocket
      mods.pool.useWebSocketImplementation(mods.ws.WebSocket)
      return mods
    }
  }
  throw new Error(`nostr-tools and ws not found in ${candidates.join(', ')}: run scripts/install-tools.sh or set NIP46_NODE_MODULES`)
}

// log writes obj as one JSON line to stderr.
export const log = obj => process.stderr.write(JSON.stringify(obj) + '\n')

// out writes obj as one JSON line to stdout.
export const out = obj => process.stdout.write(JSON.stringify(obj) + '\n')

// usage logs {"usage_error": msg} and exits with status 2.
export function usage(msg) {
  log({ usage_error: msg })
  process.exit(2)
}
