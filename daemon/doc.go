// Package daemon owns the co-signer's component graph: New builds it from a Config (store,
// keys, policy, trusted clock, chain watcher, relay pool, NIP-46 remote signer, psbtflow
// service, automations engine, health listener) and Run runs it until its context ends or a
// component fails. Chain events go through one subscriber list (ChainSubscriber) and are
// acknowledged to the watcher only after every subscriber persisted them.
//
// It wires and adapts; it must not hold domain rules (which coin is spendable is chainwatch's,
// what to sign is psbtflow's and policy's) nor read the environment or print (cmd/cosigner).
package daemon
