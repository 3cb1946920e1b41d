// relay.mjs — a Nostr relay for the local test network, built from the
// @nostr-relay/core library (not written by this project) and the ws server.
//
// usage: node relay.mjs <port> [<sqlite-file>|:memory:]
// Listens on 127.0.0.1:<port>, prints "relay listening on ws://127.0.0.1:<port>"
// once ready, and stops on SIGTERM/SIGINT. Ephemeral kinds (20000–29999, such
// as NIP-46's 24133) are relayed live to subscribers and never stored.
import { NostrRelay } from '@nostr-relay/core';
import { EventRepositorySqlite } from '@nostr-relay/event-repository-sqlite';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node relay.mjs <port> [<sqlite-file>]');
  process.exit(2);
}
const repo = new EventRepositorySqlite(process.argv[3] || ':memory:');
await repo.init();
const relay = new NostrRelay(repo);
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 1 << 20 });

wss.on('connection', (ws) => {
  relay.handleConnection(ws);
  ws.on('message', async (data) => {
    let msg;
    try { msg = JSON.parse(data.toString()); } catch { return ws.send(JSON.stringify(['NOTICE', 'invalid: not JSON'])); }
    if (!Array.isArray(msg)) return ws.send(JSON.stringify(['NOTICE', 'invalid: not an array']));
    try { await relay.handleMessage(ws, msg); } catch (e) { console.error('handleMessage:', e); ws.send(JSON.stringify(['NOTICE', 'error: ' + e.message])); }
  });
  ws.on('close', () => relay.handleDisconnect(ws));
  ws.on('error', (e) => console.error('client error:', e.message));
});
wss.on('listening', () => console.log(`relay listening on ws://127.0.0.1:${port}`));
wss.on('error', (e) => { console.error('server error:', e.message); process.exit(1); });

const stop = async () => { wss.close(); for (const c of wss.clients) c.terminate(); await relay.destroy(); await repo.destroy?.(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
