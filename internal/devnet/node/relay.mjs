// relay.mjs — a Nostr relay for the local test network, built from the
// @nostr-relay/core library (not written by this project) and the ws server.
//
// usage: node relay.mjs <port> [<sqlite-file>|:memory:] [options]
//   --auth                    NIP-42: send an AUTH challenge on connect (the library's own
//                             support) and refuse EVENT and REQ from clients that have not
//                             authenticated ("auth-required: …" in OK / CLOSED).
//   --max-message-length N    NIP-11 limitation.max_message_length: larger messages close the
//                             connection (WebSocket 1009), as the ws server does.
//   --max-subscriptions N     NIP-11 limitation.max_subscriptions (the library then silently
//                             drops a client's oldest subscription beyond N).
//   --max-filters N           NIP-11 limitation.max_filters: a REQ with more gets CLOSED.
// Listens on 127.0.0.1:<port> (0 picks a free port), prints
// "relay listening on ws://127.0.0.1:<port>" once ready, and stops on SIGTERM/SIGINT.
// An HTTP GET with "Accept: application/nostr+json" on the same port returns the NIP-11
// relay information document with the limits above. Ephemeral kinds (20000–29999, such as
// NIP-46's 24133) are relayed live to subscribers and never stored.
import http from 'node:http';
import { NostrRelay } from '@nostr-relay/core';
import { EventRepositorySqlite } from '@nostr-relay/event-repository-sqlite';
import { WebSocketServer } from 'ws';

const usage = 'usage: node relay.mjs <port> [<sqlite-file>] [--auth] [--max-message-length N] [--max-subscriptions N] [--max-filters N]';
const args = process.argv.slice(2);
const port = Number(args.shift());
if (!Number.isInteger(port) || port < 0) {
  console.error(usage);
  process.exit(2);
}
const db = args[0] && !args[0].startsWith('--') ? args.shift() : ':memory:';
const opts = { auth: false, maxMessageLength: 1 << 20, maxSubscriptions: 0, maxFilters: 0 };
while (args.length) {
  const a = args.shift();
  const num = () => {
    const n = Number(args.shift());
    if (!Number.isInteger(n) || n <= 0) { console.error(`${a} needs a positive integer; ${usage}`); process.exit(2); }
    return n;
  };
  if (a === '--auth') opts.auth = true;
  else if (a === '--max-message-length') opts.maxMessageLength = num();
  else if (a === '--max-subscriptions') opts.maxSubscriptions = num();
  else if (a === '--max-filters') opts.maxFilters = num();
  else { console.error(`unknown option ${a}; ${usage}`); process.exit(2); }
}

const repo = new EventRepositorySqlite(db);
await repo.init();
const relay = new NostrRelay(repo, {
  ...(opts.auth ? { hostname: '127.0.0.1' } : {}),
  ...(opts.maxSubscriptions ? { maxSubscriptionsPerClient: opts.maxSubscriptions } : {}),
});

const limitation = { max_message_length: opts.maxMessageLength, auth_required: opts.auth };
if (opts.maxSubscriptions) limitation.max_subscriptions = opts.maxSubscriptions;
if (opts.maxFilters) limitation.max_filters = opts.maxFilters;
const info = {
  name: 'cosigner devnet relay',
  description: '@nostr-relay/core behind internal/devnet/node/relay.mjs',
  software: 'https://github.com/CodyTseng/nostr-relay',
  supported_nips: opts.auth ? [1, 11, 42] : [1, 11],
  limitation,
};
const server = http.createServer((req, res) => {
  if ((req.headers.accept || '').includes('application/nostr+json')) {
    res.writeHead(200, { 'Content-Type': 'application/nostr+json', 'Access-Control-Allow-Origin': '*' });
    return res.end(JSON.stringify(info));
  }
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('use a WebSocket, or Accept: application/nostr+json\n');
});
const wss = new WebSocketServer({ server, maxPayload: opts.maxMessageLength });

// refuse answers an unauthenticated client's EVENT or REQ (NIP-42 "auth-required:" prefix)
// and sends the challenge again, as NIP-42 suggests.
const refuse = (ws, msg) => {
  const why = 'auth-required: this relay serves authenticated clients only (NIP-42)';
  if (msg[0] === 'EVENT') ws.send(JSON.stringify(['OK', msg[1]?.id ?? '', false, why]));
  else ws.send(JSON.stringify(['CLOSED', String(msg[1]), why]));
  ws.send(JSON.stringify(['AUTH', relay.getClientContext(ws).id]));
};

wss.on('connection', (ws) => {
  relay.handleConnection(ws);
  ws.on('message', async (data) => {
    let msg;
    try { msg = JSON.parse(data.toString()); } catch { return ws.send(JSON.stringify(['NOTICE', 'invalid: not JSON'])); }
    if (!Array.isArray(msg)) return ws.send(JSON.stringify(['NOTICE', 'invalid: not an array']));
    if (opts.auth && (msg[0] === 'EVENT' || msg[0] === 'REQ') && !relay.isAuthorized(ws)) return refuse(ws, msg);
    if (opts.maxFilters && msg[0] === 'REQ' && msg.length - 2 > opts.maxFilters) {
      return ws.send(JSON.stringify(['CLOSED', String(msg[1]), `error: at most ${opts.maxFilters} filters per REQ`]));
    }
    try { await relay.handleMessage(ws, msg); } catch (e) { console.error('handleMessage:', e); ws.send(JSON.stringify(['NOTICE', 'error: ' + e.message])); }
  });
  ws.on('close', () => relay.handleDisconnect(ws));
  ws.on('error', (e) => console.error('client error:', e.message));
});
server.on('listening', () => console.log(`relay listening on ws://127.0.0.1:${server.address().port}`));
server.on('error', (e) => { console.error('server error:', e.message); process.exit(1); });
server.listen(port, '127.0.0.1');

const stop = async () => { wss.close(); for (const c of wss.clients) c.terminate(); server.close(); await relay.destroy(); await repo.destroy?.(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
