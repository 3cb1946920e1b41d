// Package descriptor owns output script descriptors for the co-signer's
// registered wallet: parsing and validating the descriptor text (BIP-380 key
// expressions, BIP-389 multipath), the BIP-380 checksum, deriving the scripts,
// addresses and keys at a given branch and index, and answering "is this key
// path or script ours?" for PSBT analysis. It also computes Electrum
// scripthashes for derived scripts.
//
// Supported: wsh(multi|sortedmulti(k,KEY,…)) (BIP-382, BIP-383),
// sh(wsh(multi|sortedmulti(…))) (BIP-381), and tr(KEY,TREE) (BIP-386) whose
// TREE is one multi_a/sortedmulti_a leaf (BIP-387) or a tree {A,B} of them.
// Every KEY is an extended public key (xpub/tpub) with optional key origin,
// unhardened steps, at most one multipath step /<a;b;…> and a final
// unhardened wildcard /*; the tr() internal key may instead be a fixed
// x-only (or compressed) hex key, in practice the BIP-341 NUMS point H
// (NUMSKey), which leaves only the script paths. A key written identically
// in several leaves is one key slot.
//
// Derive answers "which scripts and keys at (branch, index)" (with the
// taproot commitment: internal key, merkle root, leaf hashes and control
// blocks); Match and MatchPath answer "is this script / key path ours, on
// which branch and index"; MaxWitnessSize, MaxScriptSigSize and
// MaxSatisfactionWeight size the spend for vsize estimates.
//
// The package is a pure functional core: no I/O, no goroutines; a parsed
// *Descriptor is immutable and safe for concurrent use (derived child
// public keys are cached per key slot behind a mutex).
//
// Specifications:
//   - BIP-380 https://github.com/bitcoin/bips/blob/master/bip-0380.mediawiki
//   - BIP-382 https://github.com/bitcoin/bips/blob/master/bip-0382.mediawiki
//   - BIP-381 https://github.com/bitcoin/bips/blob/master/bip-0381.mediawiki
//   - BIP-383 https://github.com/bitcoin/bips/blob/master/bip-0383.mediawiki
//   - BIP-386 https://github.com/bitcoin/bips/blob/master/bip-0386.mediawiki
//   - BIP-387 https://github.com/bitcoin/bips/blob/master/bip-0387.mediawiki
//   - BIP-389 https://github.com/bitcoin/bips/blob/master/bip-0389.mediawiki
package descriptor
