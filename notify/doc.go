// Package notify sends the operator private direct messages over Nostr (NIP-17): what the
// cosigner's automations did and what needs a human (a proposal held, denied, stuck,
// broadcast, confirmed, abandoned).
//
// A message is a kind 14 chat message (the "rumor": unsigned, the cosigner's pubkey as author,
// one p tag per operator), sealed in a kind 13 event signed by the cosigner's Nostr key, and
// gift-wrapped in a kind 1059 event signed by a one-time random key, p-tagged to the one who
// can open it (NIP-59). The seal and the wrap carry created_at times drawn uniformly from the
// two days before now, so relays cannot group them by time; the rumor carries the real time.
// One wrap goes to each operator and one to the cosigner's own pubkey, as NIP-17 says
// ("gift-wrapped to each receiver and the sender individually"): whoever holds the cosigner's
// key can read what it sent, and the operators see one conversation (the cosigner and every
// configured operator are its members, NIP-17 "Chat Rooms").
//
// Relays (NIP-17 "Publishing"): an operator's wrap goes to the relays of the operator's kind
// 10050 list (read from the cosigner's relays through a subscription kept open, so a new list
// is seen as soon as it is published) and to the cosigner's own relays; with no kind 10050
// list, to the cosigner's relays only. The cosigner's own copy goes to its relays.
//
// Send builds the three layers at once (so bad input is an error to the caller) and queues the
// wraps; one goroutine owned by the DM publishes them through the relay pool, retrying with
// backoff when no relay accepts. The queue is in memory and bounded: a message still queued when
// the process stops is lost (the caller's durable state, for example the proposal timeline,
// is the record). Logs name kinds, recipients, event ids and relay results, never the text.
//
// Files: notify.go (DM: New, Send, SendWait, Close), wrap.go (the pure NIP-17/NIP-59 layers:
// Rumor, Seal, Wrap, Unwrap), inbox.go (kind 10050 relay lists), recipients.go (npub/hex
// parsing), errors.go.
package notify
