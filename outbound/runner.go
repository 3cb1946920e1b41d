package outbound

// The runner (issue 15, "react to the confirming block without polling ticks"): one goroutine
// takes the proposals forward, and each step is woken by what enables it:
//   - a chain event that fires a proposal wakes that proposal (HandleEvent): built, signed here
//     and sent to the co-signers at once;
//   - a co-signer's answer wakes its proposal (askOne), which is then finalized (with the
//     answer, when it completes the threshold) and broadcast at once;
//   - a retry falling due (a co-signer that failed, or whose chain view lagged) wakes its
//     proposal by a timer;
//   - every chain event wakes a pass over all proposals in flight (confirmations, conflicts,
//     fee bumps); that pass gives way, between two proposals, to the proposals woken above;
//   - a deposit seen (FundingSeen) queues the pre-build of the funding_confirmed proposal it
//     will fire (prebuild.go), done while nothing else is due, and connects to the automation's
//     co-signers; a new tip refreshes the fee estimates (fees.go) in the background.
//
// Config.Tick only paces a pass over every proposal as a safety net (a cancel written by another
// process, a hold that ended, a step that failed). Every state change is still stored before its
// effect (outbound_run.go): waking a step earlier changes when it runs, not what it does.

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/custodyagents/cosigner/policy"
)

// maxStepsInARow bounds the steps one proposal takes in a row when each changed its state
// (built → signed → asked).
const maxStepsInARow = 4

// due is the runner's work list. Safe for concurrent use.
type due struct {
	mu       sync.Mutex
	ids      []string // proposals woken by their own event, in order, each once
	queued   map[string]bool
	all      bool // a pass over every proposal in flight
	prebuild []prebuildJob
	fees     bool                // refresh the fee estimates (a new tip)
	warm     []policy.Automation // connect to these automations' co-signers
}

// Wake makes the runner pass over every proposal in flight now (the chain changed).
func (e *Engine) Wake() {
	e.due.mu.Lock()
	e.due.all = true
	e.due.mu.Unlock()
	e.signal()
}

// wakeProposal makes the runner step proposal id next, before any pass over all proposals.
func (e *Engine) wakeProposal(id string) {
	e.due.mu.Lock()
	if e.due.queued == nil {
		e.due.queued = map[string]bool{}
	}
	if !e.due.queued[id] {
		e.due.queued[id] = true
		e.due.ids = append(e.due.ids, id)
	}
	e.due.mu.Unlock()
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// nextWoken takes the first woken proposal off the list.
func (e *Engine) nextWoken() (string, bool) {
	e.due.mu.Lock()
	defer e.due.mu.Unlock()
	if len(e.due.ids) == 0 {
		return "", false
	}
	id := e.due.ids[0]
	e.due.ids = e.due.ids[1:]
	delete(e.due.queued, id)
	return id, true
}

// Run takes the proposals in flight forward, each step woken by the event that enables it
// (see above) or by the safety tick, and fires schedule automations, until ctx ends; then it
// waits for the co-signer requests and background work it started. It returns nil when ctx is
// cancelled.
func (e *Engine) Run(ctx context.Context) error {
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.runSchedule(ctx) }()
	defer e.wg.Wait()
	defer e.stopRetryWakes()
	e.due.mu.Lock()
	e.due.all = true
	e.due.warm = append(e.due.warm, e.policy().AutomationsAt(e.now())...)
	e.due.mu.Unlock()
	t := time.NewTicker(e.tick)
	defer t.Stop()
	for {
		e.startBackground(ctx)
		if e.chain.Synced() {
			e.work(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.due.mu.Lock()
			e.due.all = true
			e.due.mu.Unlock()
		case <-e.wake:
		}
	}
}

// work does what is due, woken proposals first, until nothing is.
func (e *Engine) work(ctx context.Context) {
	for ctx.Err() == nil {
		if e.stepWoken(ctx) {
			continue
		}
		e.due.mu.Lock()
		var job *prebuildJob
		if len(e.due.prebuild) > 0 {
			job = &e.due.prebuild[0]
			e.due.prebuild = e.due.prebuild[1:]
		}
		all := e.due.all
		if job == nil {
			e.due.all = false
		}
		e.due.mu.Unlock()
		switch {
		case job != nil:
			e.prebuild(ctx, *job)
		case all:
			e.Step(ctx)
		default:
			return
		}
	}
}

// startBackground starts what was asked for in the background: the fee estimates of a new tip
// and the connections to co-signers.
func (e *Engine) startBackground(ctx context.Context) {
	e.due.mu.Lock()
	fees, warm := e.due.fees, e.due.warm
	e.due.fees, e.due.warm = false, nil
	e.due.mu.Unlock()
	for _, a := range warm {
		e.warm(ctx, a)
	}
	if fees {
		e.refreshFees(ctx)
	}
}

// stepWoken steps the first woken proposal, if any, and reports whether there was one.
func (e *Engine) stepWoken(ctx context.Context) bool {
	id, ok := e.nextWoken()
	if ok {
		e.steps(ctx, id)
	}
	return ok
}

// stepAllWoken steps the woken proposals, in order, and adds their ids to done.
func (e *Engine) stepAllWoken(ctx context.Context, done map[string]bool) {
	for ctx.Err() == nil {
		id, ok := e.nextWoken()
		if !ok {
			return
		}
		e.steps(ctx, id)
		done[id] = true
	}
}

// steps advances proposal id while its steps change its state (a few in a row at most).
// Errors are logged; the next pass retries.
func (e *Engine) steps(ctx context.Context, id string) {
	for range maxStepsInARow {
		changed, err := e.advance(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("proposal step failed; retried later", "proposal", id, "error", err)
			}
			return
		}
		if !changed {
			return
		}
	}
}

// Step passes over every proposal in flight now: each gets its next step(s). Proposals woken
// by their own event (wakeProposal) go first, also between two proposals of the pass (and are
// not stepped again by it). Errors are logged; the next pass retries.
func (e *Engine) Step(ctx context.Context) {
	done := map[string]bool{}
	e.stepAllWoken(ctx, done)
	ps, err := e.db.Proposals(ctx, string(StateProposed), string(StateAwaitingCosigners), string(StateFinalized),
		string(StateBroadcast), string(StateConfirmed))
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("read proposals", "error", err)
		}
		return
	}
	defer e.stopStaleAsks(ctx)
	tip := e.chain.TipHeight()
	for _, p := range ps {
		e.stepAllWoken(ctx, done)
		if done[p.ID] || p.State == string(StateConfirmed) && p.BroadcastHeight > 0 && tip-p.BroadcastHeight > 100 {
			continue // stepped already, or deep enough: no longer followed
		}
		e.steps(ctx, p.ID)
	}
	e.stepAllWoken(ctx, done)
}

// stopStaleAsks cancels the co-signer requests of proposals no longer awaiting co-signers
// (cancelled by the operator, abandoned, or finalized with the others' signatures).
func (e *Engine) stopStaleAsks(ctx context.Context) {
	ps, err := e.db.Proposals(ctx, string(StateAwaitingCosigners))
	if err != nil {
		return
	}
	awaiting := map[string]bool{}
	for _, p := range ps {
		awaiting[p.ID] = true
	}
	e.askMu.Lock()
	defer e.askMu.Unlock()
	for key, cancel := range e.asking {
		if id, _, _ := strings.Cut(key, "/"); !awaiting[id] {
			cancel()
		}
	}
}

// retryIn records that the co-signer request key ("proposal/cosigner") may be sent again after
// d (on the engine's clock) and wakes its proposal then.
func (e *Engine) retryIn(key string, d time.Duration) {
	id, _, _ := strings.Cut(key, "/")
	e.askMu.Lock()
	defer e.askMu.Unlock()
	e.retryAt[key] = e.now().Add(d)
	if t := e.retryWake[key]; t != nil {
		t.Stop()
	}
	e.retryWake[key] = time.AfterFunc(d, func() { e.wakeProposal(id) })
}

// stopRetryWakes stops the retry timers (the runner is ending).
func (e *Engine) stopRetryWakes() {
	e.askMu.Lock()
	defer e.askMu.Unlock()
	for k, t := range e.retryWake {
		t.Stop()
		delete(e.retryWake, k)
	}
}

// firedIDs returns the ids of the proposals of firings (ProposalID).
func firedIDs(firings []Firing) []string {
	out := make([]string, len(firings))
	for i, f := range firings {
		out[i] = ProposalID(f.Automation, f.TriggerKey)
	}
	return out
}
