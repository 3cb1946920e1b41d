// Package e2e holds the end-to-end test: the product on the local test network, driven by
// independent clients — nostr-tools' BunkerSigner for NIP-46 and a BDK (bdkpython) coordinator
// wallet — through the real `cosigner run` binary. The client scripts are in clients/.
package e2e
