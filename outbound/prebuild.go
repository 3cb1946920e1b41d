package outbound

// Building while waiting (issue 15): when a deposit to a receive address is first seen
// (FundingSeen), the PSBT of the funding_confirmed proposal it will fire is built at once — fee
// estimate, coin selection, previous transactions, BIP-174 Creator and Updater — and kept in
// memory with the plan it was built from. When the deposit confirms and the proposal is built,
// the plan is made again from the chain and the store as they are then; the pre-built PSBT is
// used only if that plan is the same (sameAs: the automation and the policy's feerate limit,
// the feerate, the coins, the destination, the change index), else it is discarded and a new
// one built.
//
// Why this cannot sign what the policy forbids nor miscount the spend exposure: the pre-built
// PSBT is never signed as it is kept; it becomes the proposal's unsigned PSBT only through the
// same storeBuilt as any build, and is signed only by Signer.Decide, which analyses it against
// the chain view of that moment (every input an unspent wallet coin) and the policy in force,
// and counts it in the ledger as any request. Its coins are the coins a build at confirmation
// would choose — the same set, each still spendable and not taken by a live proposal — so no
// coin of another proposal is put in it. A deposit double-spent between seen and confirmed
// never confirms under its outpoint: no proposal is fired for it, the kept PSBT is never used
// (and is forgotten when the set is full); a proposal fired for a coin no longer in the wallet
// has another coin set, so the kept PSBT is discarded and the build finds nothing to spend.
// The set is memory only: after a restart the build starts afresh.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// maxPrebuilt bounds the PSBTs kept for deposits not confirmed yet, and the pre-builds waiting
// to be done (the oldest is forgotten).
const maxPrebuilt = 64

// prebuildJob is a pre-build to do: the funding_confirmed proposal (id) that automation will
// fire for a deposit seen, under trigger key key.
type prebuildJob struct {
	id, automation, key string
}

// prebuilt is a PSBT built before its proposal existed, with the plan it was built from, the
// change index it pays (-1: none) and the tip height it was built at.
type prebuilt struct {
	pk     *btcpsbt.Packet
	plan   buildPlan
	change int64
	tip    int32
}

// prebuiltSet keeps the pre-built PSBTs by proposal id, at most maxPrebuilt. Safe for
// concurrent use.
type prebuiltSet struct {
	mu    sync.Mutex
	m     map[string]prebuilt
	order []string // oldest first
}

func (s *prebuiltSet) put(id string, p prebuilt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]prebuilt{}
	}
	if _, ok := s.m[id]; !ok {
		s.order = append(s.order, id)
	}
	s.m[id] = p
	for len(s.order) > maxPrebuilt {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
}

// take removes and returns the PSBT pre-built for proposal id.
func (s *prebuiltSet) take(id string) (prebuilt, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[id]
	if ok {
		delete(s.m, id)
		s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
	}
	return p, ok
}

// queuePrebuilds queues the pre-build of the funding_confirmed proposals a deposit seen will
// fire (receive branch only, as FundingFirings) and the connections to their co-signers.
func (e *Engine) queuePrebuilds(autos []policy.Automation, ev chainwatch.FundingSeen) {
	if ev.UTXO.Branch != ReceiveBranch {
		return
	}
	e.due.mu.Lock()
	defer e.due.mu.Unlock()
	for _, a := range autos {
		if a.Trigger.Kind != policy.TriggerFundingConfirmed {
			continue
		}
		key := FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint)
		job := prebuildJob{id: ProposalID(a.Name, key), automation: a.Name, key: key}
		if slices.Contains(e.due.prebuild, job) {
			continue
		}
		// At most maxPrebuilt waiting (a flood of deposits seen): the oldest are left to be
		// built when they confirm.
		if len(e.due.prebuild) >= maxPrebuilt {
			e.due.prebuild = e.due.prebuild[1:]
		}
		e.due.prebuild = append(e.due.prebuild, job)
		e.due.warm = append(e.due.warm, a)
	}
	e.signal()
}

// prebuild builds and keeps the PSBT of job's proposal, unless the proposal exists already (its
// deposit confirmed first) or cannot be built now (the build at confirmation decides then).
func (e *Engine) prebuild(ctx context.Context, job prebuildJob) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.db.GetProposal(ctx, job.id); !errors.Is(err, store.ErrNoSuchProposal) {
		return
	}
	a, ok := e.automation(job.automation)
	if !ok {
		return
	}
	p := store.Proposal{ID: job.id, Automation: a.Name, TriggerKey: job.key, State: string(StateProposed)}
	pl, abandon, err := e.plan(ctx, p, a)
	if err != nil || abandon != "" {
		e.log.Debug("not pre-built; built when the deposit confirms", "proposal", job.id, "automation", a.Name, "reason", abandon, "error", err)
		return
	}
	tip := e.chain.TipHeight()
	pk, change, err := e.buildPSBT(ctx, pl.coins, pl.payTo, pl.reserve, pl.rate, pl.used)
	if err != nil {
		e.log.Debug("not pre-built; built when the deposit confirms", "proposal", job.id, "automation", a.Name, "error", err)
		return
	}
	e.prebuilt.put(job.id, prebuilt{pk: pk, plan: pl, change: change, tip: tip})
	e.log.Info("proposal pre-built while its deposit is unconfirmed", "proposal", job.id, "automation", a.Name, "trigger", job.key,
		"inputs", len(pk.UnsignedTx.TxIn), "feerate", float64(pl.rate))
}

// usePrebuilt returns the PSBT pre-built for proposal p if pl, the plan made now, is the plan it
// was built from and its change index is still the next unused one; nil when there is none or
// something changed (then it is discarded, and the reason logged).
func (e *Engine) usePrebuilt(ctx context.Context, p store.Proposal, pl buildPlan) (*btcpsbt.Packet, error) {
	pre, ok := e.prebuilt.take(p.ID)
	if !ok {
		return nil, nil
	}
	why := pre.plan.differsFrom(pl)
	if why == "" && pre.change >= 0 {
		idx, err := e.changeIndex(ctx, pl.used)
		if err != nil {
			return nil, err
		}
		if int64(idx) != pre.change {
			why = fmt.Sprintf("the next change index is %d, not %d", idx, pre.change)
		}
	}
	if why != "" {
		e.log.Info("pre-built PSBT discarded; building again", "proposal", p.ID, "automation", p.Automation, "reason", why)
		return nil, nil
	}
	// Still unsigned: the anti-fee-sniping nLockTime (psbt.Build) follows the tip when it was
	// the tip at the pre-build (not one of the draws set earlier on purpose).
	tip := e.chain.TipHeight()
	if lt := pre.pk.UnsignedTx.LockTime; lt == uint32(pre.tip) && tip > pre.tip {
		pre.pk.UnsignedTx.LockTime = uint32(tip)
	}
	return pre.pk, nil
}

// differsFrom says what differs between the plan a PSBT was pre-built from and q, the plan
// made now ("" when nothing a build depends on does).
func (pl buildPlan) differsFrom(q buildPlan) string {
	a, b := pl.auto, q.auto
	a.Line, b.Line = 0, 0
	switch {
	case !reflect.DeepEqual(a, b):
		return "the automation changed"
	case pl.limitMax != q.limitMax:
		return "the policy's max_feerate changed"
	case pl.rate != q.rate:
		return fmt.Sprintf("the feerate changed: %.1f → %.1f sat/vB", float64(pl.rate), float64(q.rate))
	case !slices.EqualFunc(byOutPoint(pl.coins), byOutPoint(q.coins), sameCoin):
		return "the coins to spend changed"
	case !bytes.Equal(pl.payTo, q.payTo):
		return "the destination changed"
	case pl.reserve != q.reserve:
		return "the reserve changed"
	}
	return ""
}

// byOutPoint returns a copy of coins in outpoint order.
func byOutPoint(coins []psbt.UTXO) []psbt.UTXO {
	out := slices.Clone(coins)
	slices.SortFunc(out, func(a, b psbt.UTXO) int { return strings.Compare(a.OutPoint.String(), b.OutPoint.String()) })
	return out
}

// sameCoin compares two coins by outpoint, value, script and place in the wallet (not by
// height: the deposit that fired the proposal confirmed since).
func sameCoin(a, b psbt.UTXO) bool {
	return a.OutPoint == b.OutPoint && a.Value == b.Value && bytes.Equal(a.PkScript, b.PkScript) && a.Branch == b.Branch && a.Index == b.Index
}
