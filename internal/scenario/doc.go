// Package scenario drives the whole product on the local test network, for the end-to-end test
// and for `make demo`: it starts the network (internal/devnet), creates a 2-of-3 wallet whose key
// A lives in a real `cosigner run` process, key B in a BDK wallet (bdkpython) and key C is an
// xpub only, and offers the steps both callers need — funding, building and co-signing PSBTs
// with BDK, talking NIP-46 to the cosigner through nostr-tools' BunkerSigner, reading the
// cosigner's status. The callers decide what to assert or print.
package scenario
