package outbound

// Outbound proposals, the pure core (issue 6; docs/automations.md, proposals): the
// states a transaction this co-signer builds itself goes through, which changes are allowed,
// and what to do next given a proposal's state and the facts the shell gathered (chain,
// signatures, tip). Everything here is a pure function of values; outbound_run.go is the shell
// that acts on the decisions and stores each change with store.ChangeProposal.

import (
	"errors"
	"fmt"
	"slices"
)

// Outbound errors.
var (
	// ErrTransition means a step would move a proposal between states the state machine does
	// not connect (a bug in the caller; nothing is written).
	ErrTransition = errors.New("outbound: proposal state change not allowed")
	// ErrAutomation means an automation cannot run with this wallet (for example it asks for
	// more signatures than the descriptor's keys, or fewer than its threshold).
	ErrAutomation = errors.New("outbound: automation cannot run")
	// ErrConfig means an Engine's Config misses a required part.
	ErrConfig = errors.New("outbound: engine configuration")
)

// ProposalState is a proposal's state (docs/automations.md, proposals). The store keeps it as
// these strings (store.Proposal.State); this is their one definition.
type ProposalState string

// The states: proposed → awaiting_cosigners → finalized → broadcast → confirmed | replaced |
// abandoned.
const (
	// StateProposed: the automation fired; the PSBT is being built and signed by this co-signer
	// (a policy hold keeps it here until the hold ends).
	StateProposed ProposalState = "proposed"
	// StateAwaitingCosigners: this co-signer signed its share; the others are asked.
	StateAwaitingCosigners ProposalState = "awaiting_cosigners"
	// StateFinalized: enough signatures; the network transaction is extracted and stored (it is
	// broadcast from the store, never rebuilt).
	StateFinalized ProposalState = "finalized"
	// StateBroadcast: sent to the network; followed until it confirms.
	StateBroadcast ProposalState = "broadcast"
	// StateConfirmed: in a block of the watcher's chain (a reorg takes it back to broadcast).
	StateConfirmed ProposalState = "confirmed"
	// StateReplaced: an RBF fee bump of it confirmed instead.
	StateReplaced ProposalState = "replaced"
	// StateAbandoned: it will not be completed; Reason says why.
	StateAbandoned ProposalState = "abandoned"
)

// Co-signer states of a proposal (store.ProposalCosigner.State): asked and not answered yet,
// holding the request (auth_url), signed, refused, or failed (asked again later).
const (
	CosignerWaiting = "waiting"
	CosignerHeld    = "held"
	CosignerSigned  = "signed"
	CosignerDenied  = "denied"
	CosignerError   = "error"
)

// transitions lists, per state, the states it may move to (itself included where a step only
// records progress: the built PSBT, a co-signer's partial signatures, a re-broadcast).
var transitions = map[ProposalState][]ProposalState{
	StateProposed:          {StateProposed, StateAwaitingCosigners, StateAbandoned},
	StateAwaitingCosigners: {StateAwaitingCosigners, StateFinalized, StateAbandoned},
	StateFinalized:         {StateBroadcast, StateAbandoned},
	StateBroadcast:         {StateBroadcast, StateConfirmed, StateReplaced, StateAbandoned},
	StateConfirmed:         {StateBroadcast},
}

// CanTransition reports whether a proposal may move from one state to another. Replaced and
// abandoned are final; confirmed goes back to broadcast only when a reorg takes its block away.
func CanTransition(from, to ProposalState) bool {
	return slices.Contains(transitions[from], to)
}

// Live reports whether a proposal in state may still put a transaction on the chain (its
// inputs are taken): every state but confirmed, replaced and abandoned.
func Live(state string) bool {
	switch ProposalState(state) {
	case StateConfirmed, StateReplaced, StateAbandoned:
		return false
	}
	return true
}

// Conflict says what spent (some of) a proposal's inputs, when not its own transaction.
type Conflict int

const (
	// NoConflict: the inputs are unspent, or spent by the proposal's own transaction.
	NoConflict Conflict = iota
	// ConflictBumpConfirmed: a fee bump (RBF replacement) of this proposal confirmed.
	ConflictBumpConfirmed
	// ConflictOriginalConfirmed: this proposal is a fee bump, and the transaction it replaces
	// confirmed.
	ConflictOriginalConfirmed
	// ConflictElsewhere: another transaction spent them (not this wallet's proposals).
	ConflictElsewhere
)

// Facts is what the shell knows about one proposal when it decides the next step.
type Facts struct {
	State ProposalState
	// Built: a PSBT is stored (state proposed: it is signed next).
	Built bool
	// Signatures has, for the least-signed input, how many valid partial signatures the
	// stored PSBT carries; Needed how many the transaction needs (the automation's signatures).
	Signatures, Needed int
	// Seen: the proposal's transaction is in the wallet's history (mempool or chain).
	Seen bool
	// Confs counts its confirmations on the watcher's header chain (0: unconfirmed).
	Confs int32
	// Conflict says whether another transaction spent its inputs.
	Conflict Conflict
	// Tip is the watcher's tip height; BroadcastHeight the tip height when it was first
	// broadcast; BumpAfter the automation's bump_after (0: never bump).
	Tip, BroadcastHeight, BumpAfter int32
	// BumpLive: a fee bump of this proposal exists and is not abandoned.
	BumpLive bool
}

// Action is what the shell does next for a proposal.
type Action string

// The actions.
const (
	ActNone        Action = "none"      // nothing to do now (final, or waiting for the chain)
	ActBuild       Action = "build"     // select coins and build the PSBT (Creator, Updater)
	ActSelfSign    Action = "self_sign" // sign our share through the policy (Service)
	ActAsk         Action = "ask"       // ask the co-signers that have not signed
	ActFinalize    Action = "finalize"  // Finalizer + Extractor → finalized
	ActBroadcast   Action = "broadcast" // send the stored transaction → broadcast
	ActConfirm     Action = "confirm"   // → confirmed
	ActUnconfirm   Action = "unconfirm" // reorged out: → broadcast (and send it again)
	ActBump        Action = "bump"      // build an RBF replacement (a new proposal)
	ActMarkReplace Action = "replaced"  // → replaced
	ActAbandon     Action = "abandon"   // → abandoned with Decision.Reason
)

// Decision is the next step for a proposal: the action, the state it leads to when it
// succeeds, and for an abandon its reason.
type Decision struct {
	Do     Action
	To     ProposalState
	Reason string
}

// Reasons for abandoning a proposal, as stored (a policy denial keeps the policy's own text,
// "policy_denied: …").
const (
	ReasonCancelled         = "cancelled by operator"
	ReasonInsufficientFunds = "insufficient_funds"
	ReasonSpentElsewhere    = "inputs spent elsewhere"
	ReasonOriginalConfirmed = "the transaction it replaces confirmed"
	// ReasonFeeTooLow starts the reason of a fee bump the network refused as paying too little
	// over what it replaces; the next bump pays more.
	ReasonFeeTooLow = "fee_too_low"
)

// Next decides what to do with a proposal given the facts. Pure.
func Next(f Facts) Decision {
	stay := func(a Action) Decision { return Decision{Do: a, To: f.State} }
	abandonOnConflict := func() (Decision, bool) {
		switch f.Conflict {
		case ConflictOriginalConfirmed:
			return Decision{Do: ActAbandon, To: StateAbandoned, Reason: ReasonOriginalConfirmed}, true
		case ConflictElsewhere, ConflictBumpConfirmed:
			// Before broadcast a confirmed bump cannot exist; treat it like any other spend.
			return Decision{Do: ActAbandon, To: StateAbandoned, Reason: ReasonSpentElsewhere}, true
		}
		return Decision{}, false
	}
	switch f.State {
	case StateProposed:
		if d, ok := abandonOnConflict(); ok {
			return d
		}
		if !f.Built {
			return stay(ActBuild)
		}
		return Decision{Do: ActSelfSign, To: StateAwaitingCosigners}
	case StateAwaitingCosigners:
		if d, ok := abandonOnConflict(); ok {
			return d
		}
		if f.Needed > 0 && f.Signatures >= f.Needed {
			return Decision{Do: ActFinalize, To: StateFinalized}
		}
		return stay(ActAsk)
	case StateFinalized:
		if f.Seen { // it reached the network before the broadcast state was stored
			return Decision{Do: ActBroadcast, To: StateBroadcast}
		}
		if d, ok := abandonOnConflict(); ok {
			return d
		}
		return Decision{Do: ActBroadcast, To: StateBroadcast}
	case StateBroadcast:
		if f.Confs > 0 {
			return Decision{Do: ActConfirm, To: StateConfirmed}
		}
		switch f.Conflict {
		case ConflictBumpConfirmed:
			return Decision{Do: ActMarkReplace, To: StateReplaced}
		case ConflictOriginalConfirmed:
			return Decision{Do: ActAbandon, To: StateAbandoned, Reason: ReasonOriginalConfirmed}
		case ConflictElsewhere:
			return Decision{Do: ActAbandon, To: StateAbandoned, Reason: ReasonSpentElsewhere}
		}
		if !f.Seen {
			if f.BumpLive {
				return stay(ActNone) // its fee bump replaced it in the mempool (or is on its way)
			}
			return stay(ActBroadcast) // dropped from the mempool (or never got there): send it again
		}
		if f.BumpAfter > 0 && !f.BumpLive && f.BroadcastHeight > 0 && f.Tip-f.BroadcastHeight >= f.BumpAfter {
			return stay(ActBump)
		}
		return stay(ActNone)
	case StateConfirmed:
		if f.Confs == 0 {
			return Decision{Do: ActUnconfirm, To: StateBroadcast}
		}
		return stay(ActNone)
	}
	return stay(ActNone)
}

// checkTransition returns an error unless from → to is allowed.
func checkTransition(from, to ProposalState) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s → %s", ErrTransition, from, to)
	}
	return nil
}
