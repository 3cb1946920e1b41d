// Package psbt owns the PSBT mechanics of the registered wallet (wsh, sh(wsh) or taproot
// multi_a), one file per BIP-174 role: Build and Select (Creator with coin selection), update.go
// (Updater), SignInputs (Signer, keys through a KeySource), Combine (Combiner), Finalize
// (Finalizer) and extract.go (Extractor); Decode/Encode with the BIP-370 v2 reader (v2.go);
// Analyze, the safety analysis every request goes through (docs/psbt-safety.md); CheckAnswer
// for a co-signer's answer; WriteTable for people.
//
// It is pure: no I/O, no clock, no store, relay or network; the wallet view comes in as a
// ChainView value. Refusals are *Refusal values in the PSBT's own terms: this package knows no
// NIP-46 wire code (psbtflow maps them).
package psbt
