package outbound

// Automations, the trigger side (issue 6): chain events and the clock → proposals. A firing is
// stored as a proposal row (store.CreateProposal, unique per automation and trigger key) before
// the chain event that caused it is acknowledged, so a crash between the two loses nothing
// (the event comes back and finds the row) and duplicates nothing (the key is taken).
//
// Trigger keys:
//   - funding_seen:<txid>:<vout>, funding_confirmed:<txid>:<vout> — one per wallet output on the
//     receive branch (change outputs, including those of this co-signer's own proposals, never
//     fire: a sweep would otherwise trigger itself);
//   - balance_above:<coins> — <coins> is a hash of the set of confirmed coins not taken by a live
//     proposal when the balance crossed the threshold: the same coins never fire twice (restart,
//     reorg, a new tip), new coins that cross it again do;
//   - schedule:<slot start, unix seconds> — slots are multiples of Every since the Unix epoch.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/store"
)

// ReceiveBranch is the descriptor branch deposits are paid to (/0/* of /<0;1>/*).
const ReceiveBranch = 0

// fundingCatchUp is how many blocks past its N-th confirmation a deposit may still fire a
// funding_confirmed: N trigger found on a new tip (after a restart or skipped tips); older
// deposits are not swept by an automation added later.
const fundingCatchUp = 12

// Firing is one automation firing: the proposal to create.
type Firing struct {
	Automation string
	TriggerKey string
	// Detail says, for the timeline, what fired it.
	Detail string
}

// ProposalID is the id of the proposal of (automation, trigger key): the first 20 hex digits of
// SHA-256(automation NUL trigger key), the same every time the same event fires.
func ProposalID(automation, triggerKey string) string {
	h := sha256.Sum256([]byte(automation + "\x00" + triggerKey))
	return hex.EncodeToString(h[:10])
}

// FundingKey is the trigger key of a funding trigger on the wallet output op.
func FundingKey(kind policy.TriggerKind, op wire.OutPoint) string {
	return string(kind) + ":" + op.String()
}

// FundingOutPoint returns the wallet output a funding trigger key names.
func FundingOutPoint(key string) (wire.OutPoint, bool) {
	for _, k := range []policy.TriggerKind{policy.TriggerFundingSeen, policy.TriggerFundingConfirmed} {
		if rest, ok := strings.CutPrefix(key, string(k)+":"); ok {
			op, err := wire.NewOutPointFromString(rest)
			if err != nil {
				return wire.OutPoint{}, false
			}
			return *op, true
		}
	}
	return wire.OutPoint{}, false
}

// BalanceKey is the trigger key of a balance_above firing on the coins ops (any order).
func BalanceKey(ops []wire.OutPoint) string {
	ss := make([]string, len(ops))
	for i, op := range ops {
		ss[i] = op.String()
	}
	slices.Sort(ss)
	h := sha256.Sum256([]byte(strings.Join(ss, ",")))
	return string(policy.TriggerBalanceAbove) + ":" + hex.EncodeToString(h[:8])
}

// ScheduleSlot is the start of the schedule slot of length every that contains t (slots are
// multiples of every since the Unix epoch), and ScheduleKey its trigger key.
func ScheduleSlot(t time.Time, every time.Duration) time.Time {
	if every <= 0 {
		return t
	}
	return time.Unix(0, t.UnixNano()-t.UnixNano()%int64(every)).UTC()
}

// ScheduleKey is the trigger key of the schedule slot starting at slot.
func ScheduleKey(slot time.Time) string {
	return string(policy.TriggerSchedule) + ":" + strconv.FormatInt(slot.Unix(), 10)
}

// FundingFirings returns the firings of a chain event (policy.Automation.FiresOn): FundingSeen
// fires funding_seen automations, FundingConfirmed (Confs ≥ N) funding_confirmed: N ones and
// funding_seen ones (a deposit found already confirmed was seen too; the key is the same) — only
// for outputs on the receive branch. Other events fire nothing here. Pure.
func FundingFirings(autos []policy.Automation, ev chainwatch.Event) []Firing {
	var u chainwatch.UTXO
	var kind policy.TriggerKind
	var confs int32
	switch e := ev.(type) {
	case chainwatch.FundingSeen:
		u, kind = e.UTXO, policy.TriggerFundingSeen
	case chainwatch.FundingConfirmed:
		u, kind, confs = e.UTXO, policy.TriggerFundingConfirmed, e.Confs
	default:
		return nil
	}
	if u.Branch != ReceiveBranch {
		return nil
	}
	var out []Firing
	for _, a := range autos {
		if a.Trigger.Kind != policy.TriggerFundingSeen && a.Trigger.Kind != policy.TriggerFundingConfirmed || !a.FiresOn(kind, confs) {
			continue
		}
		out = append(out, Firing{Automation: a.Name, TriggerKey: FundingKey(a.Trigger.Kind, u.OutPoint),
			Detail: fmt.Sprintf("%s: %s of %s", kind, u.OutPoint, u.Value)})
	}
	return out
}

// DeepFundingFirings returns the funding_confirmed: N firings for receive-branch outputs that
// have between N and N+12 confirmations at tip (FundingConfirmed announces only the first
// confirmation; deeper ones are counted from the tip). Pure.
func DeepFundingFirings(autos []policy.Automation, utxos []chainwatch.UTXO, tip chainwatch.Tip) []Firing {
	var out []Firing
	for _, a := range autos {
		n := a.Trigger.Confirmations
		if a.Trigger.Kind != policy.TriggerFundingConfirmed || n <= 1 {
			continue
		}
		for _, u := range utxos {
			c := u.Confirmations(tip)
			if u.Branch != ReceiveBranch || c < n || c > n+fundingCatchUp {
				continue
			}
			out = append(out, Firing{Automation: a.Name, TriggerKey: FundingKey(policy.TriggerFundingConfirmed, u.OutPoint),
				Detail: fmt.Sprintf("funding_confirmed: %s of %s has %d confirmations", u.OutPoint, u.Value, c)})
		}
	}
	return out
}

// BalanceFirings returns the balance_above firings at tip: when the confirmed, spendable coins
// not taken by a live proposal (taken) add up to more than the threshold. Pure.
func BalanceFirings(autos []policy.Automation, utxos []chainwatch.UTXO, taken map[wire.OutPoint]string, tip chainwatch.Tip) []Firing {
	var ops []wire.OutPoint
	var total btcutil.Amount
	for _, u := range utxos {
		if _, ok := taken[u.OutPoint]; ok || u.Confirmations(tip) < 1 || !u.Mature(chainwatch.Tip{Height: tip.Height + 1}) {
			continue
		}
		ops = append(ops, u.OutPoint)
		total += u.Value
	}
	var out []Firing
	for _, a := range autos {
		if a.Trigger.Kind != policy.TriggerBalanceAbove || total <= a.Trigger.Balance {
			continue
		}
		out = append(out, Firing{Automation: a.Name, TriggerKey: BalanceKey(ops),
			Detail: fmt.Sprintf("balance_above: %s confirmed in %d coins at height %d (threshold %s)", total, len(ops), tip.Height, a.Trigger.Balance)})
	}
	return out
}

// ScheduleFirings returns the schedule firings at now: one per automation whose current slot
// started after started (the engine's start: the first firing is one period after it). Pure.
func ScheduleFirings(autos []policy.Automation, now, started time.Time) []Firing {
	var out []Firing
	for _, a := range autos {
		if a.Trigger.Kind != policy.TriggerSchedule || a.Trigger.Every <= 0 {
			continue
		}
		slot := ScheduleSlot(now, a.Trigger.Every)
		if !slot.After(started) {
			continue
		}
		out = append(out, Firing{Automation: a.Name, TriggerKey: ScheduleKey(slot),
			Detail: fmt.Sprintf("schedule: every %s, slot %s", policy.FormatDuration(a.Trigger.Every), slot.Format(time.RFC3339))})
	}
	return out
}

// HandleEvent is the engine's side of a chainwatch event: it stores the proposals the event
// fires (committed before it returns, so the caller acknowledges the event only after), wakes
// each of them first in line, and wakes a pass over the proposals in flight, which re-reads the
// chain. A deposit seen (FundingSeen) also queues the pre-build of the funding_confirmed
// proposals it will fire (prebuild.go) and connects to their co-signers; a new tip refreshes the
// fee estimates (fees.go). An error means nothing may be acknowledged: the event comes back
// after a restart and fires the same keys.
func (e *Engine) HandleEvent(ctx context.Context, ev chainwatch.Event) error {
	autos := e.policy().AutomationsAt(e.now())
	firings := FundingFirings(autos, ev)
	switch x := ev.(type) {
	case chainwatch.NewTip:
		if len(autos) == 0 {
			break
		}
		utxos := e.chain.SpendableUTXOs()
		firings = append(firings, DeepFundingFirings(autos, utxos, x.Tip)...)
		if slices.ContainsFunc(autos, func(a policy.Automation) bool { return a.Trigger.Kind == policy.TriggerBalanceAbove }) {
			taken, err := e.takenInputs(ctx)
			if err != nil {
				return err
			}
			firings = append(firings, BalanceFirings(autos, utxos, taken, x.Tip)...)
		}
		e.due.mu.Lock()
		e.due.fees = true
		e.due.mu.Unlock()
	case chainwatch.FundingSeen:
		e.queuePrebuilds(autos, x)
	}
	if err := e.fire(ctx, firings); err != nil {
		return err
	}
	for _, id := range firedIDs(firings) {
		e.wakeProposal(id)
	}
	e.Wake()
	return nil
}

// fire stores a proposal per firing (an existing one for the same key stays as it is).
func (e *Engine) fire(ctx context.Context, firings []Firing) error {
	for _, f := range firings {
		p, created, err := e.db.CreateProposal(ctx, store.Proposal{ID: ProposalID(f.Automation, f.TriggerKey), Automation: f.Automation, State: string(StateProposed),
			TriggerKey: f.TriggerKey, CreatedAt: e.now()}, f.Detail)
		if err != nil {
			return err
		}
		if created {
			e.log.Info("automation fired", "automation", f.Automation, "trigger", f.TriggerKey, "proposal", p.ID, "detail", f.Detail)
		}
	}
	return nil
}

// runSchedule fires schedule automations at each slot start until ctx ends. The ticker only
// paces the checks: which slot is due is decided on the engine's clock (the trusted clock).
func (e *Engine) runSchedule(ctx context.Context) {
	s := e.newSchedule()
	t := time.NewTicker(e.scheduleTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.check(ctx)
	}
}

// schedule is the schedule triggers' state within one run of the engine.
type schedule struct {
	e       *Engine
	started time.Time         // the first slot fires one period after it
	fired   map[string]string // automation → the slot key stored last (the store dedupes too)
}

func (e *Engine) newSchedule() *schedule {
	return &schedule{e: e, started: e.now(), fired: map[string]string{}}
}

// check fires the schedule automations whose slot started since they last fired, at the
// engine's now.
func (s *schedule) check(ctx context.Context) {
	e := s.e
	now := e.now()
	var due []Firing
	for _, f := range ScheduleFirings(e.policy().AutomationsAt(now), now, s.started) {
		if s.fired[f.Automation] != f.TriggerKey {
			due = append(due, f)
		}
	}
	if len(due) == 0 {
		return
	}
	if err := e.fire(ctx, due); err != nil {
		if ctx.Err() == nil {
			e.log.Error("schedule automation", "error", err)
		}
		return
	}
	for _, f := range due {
		s.fired[f.Automation] = f.TriggerKey
	}
	for _, id := range firedIDs(due) {
		e.wakeProposal(id)
	}
}
