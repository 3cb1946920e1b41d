// Package descriptor owns output script descriptors for the co-signer's
// registered wallet: parsing and validating the descriptor text (BIP-380 key
// expressions, BIP-389 multipath), the BIP-380 checksum, deriving the scripts,
// addresses and keys at a given branch and index, and answering "is this key
// path or script ours?" for PSBT analysis. It also computes Electrum
// scripthashes for derived scripts.
//
// Supported today: wsh(multi(k,KEY,…)) and wsh(sortedmulti(k,KEY,…))
// (BIP-382, BIP-383), where every KEY is an extended public key (xpub/tpub)
// with optional key origin, unhardened steps, at most one multipath step
// /<a;b;…> and a final unhardened wildcard /*. The parser builds a tree of
// script expressions so that sh(wsh(…)) and tr(…,multi_a(…)) can be added as
// further output expressions without changing the public API.
//
// The package is a pure functional core: no I/O, no goroutines; a parsed
// *Descriptor is immutable and safe for concurrent use.
//
// Specifications:
//   - BIP-380 https://github.com/bitcoin/bips/blob/master/bip-0380.mediawiki
//   - BIP-382 https://github.com/bitcoin/bips/blob/master/bip-0382.mediawiki
//   - BIP-383 https://github.com/bitcoin/bips/blob/master/bip-0383.mediawiki
//   - BIP-389 https://github.com/bitcoin/bips/blob/master/bip-0389.mediawiki
package descriptor
