// Package psbtnostr answers Electrum's psbt_nostr plugin ("Send to cosigner", Electrum ≥ 4.6.0):
// an Electrum multisig wallet sends its PSBT to each other co-signer as a kind-4 event, NIP-04
// encrypted, and cosigner — one of those co-signers — answers with the PSBT carrying its
// partial signatures, in the same format, once the same analysis and policy as a NIP-46
// sign_psbt allowed it (docs/electrum-cosigning.md).
//
// The wire, as the plugin (spesmilo/electrum electrum/plugins/psbt_nostr/psbt_nostr.py,
// CosignerWallet) and its Nostr library (PyPI electrum-aionostr 0.1.0) do it:
//   - each co-signer's Nostr secret key is sha256(utf8("nostr_psbt:" + xpub)), xpub being the
//     keystore's string as Electrum stores it (SLIP-132: Zpub/Vpub for p2wsh, Ypub/Upub for
//     p2wsh-p2sh) — ChannelKey;
//   - an event is kind 4 with tags ["p", recipient] and ["expiration", now+86400]; its content
//     is NIP-04 of the JSON {"tx": "<PSBT v0 as hex>", "label": "<optional>"} — Message;
//   - a receiver subscribes {"kinds":[4], "#p":[own], "since": now−86400, "limit": 100} and
//     drops events it has seen (ids kept 24 h), whose author is not a co-signer, or whose
//     created_at is more than 24 h off — Check;
//   - electrum-aionostr drops any relay message over 64,000 characters (MaxRelayMessage).
//
// Security: anyone who knows the wallet's xpubs computes every co-signer's key, so a sender is
// never authenticated. The channel is its own policy client (policy.ChannelElectrumNostr), off
// unless the policy lists it; every request goes through psbtflow like any other, counts in the
// spend exposure, and is rate-limited in memory before any decryption or disk write.
//
// It imports only downward: descriptor, nip46, policy, psbtflow (its Held helper), relaypool
// (events), store (its records, behind the Records interface).
package psbtnostr
