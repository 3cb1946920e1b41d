// Command cosigner is the one binary of the project: a headless Bitcoin multisig co-signer that
// serves NIP-46 over Nostr relays and signs PSBTs when its policy allows.
//
//	cosigner init           create the account key and Nostr identity (encrypted key file)
//	cosigner bunker-uri     print a bunker:// URI with a fresh single-use connect secret
//	cosigner run            watch the wallet and serve NIP-46 until SIGTERM/SIGINT
//	cosigner status         the wallet as last seen: tip, balance, UTXOs (no network needed)
//	cosigner health         exit 0 if the running daemon reports healthy (Docker HEALTHCHECK)
//	cosigner policy check F validate a policy file (errors as FILE:LINE:COL)
//
// Configuration comes from COSIGNER_* environment variables (see config.go and the README).
// This package reads flags and the environment and prints; `run` hands a daemon.Config to
// package daemon, which owns the component graph. No domain rule lives here.
package main
