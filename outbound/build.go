package outbound

// Building a proposal's PSBT: the automation's destination and feerate, coin selection
// (psbt.Select) and the BIP-174 Creator and Updater (psbt.Build), change at the next
// unused change index; the unsigned PSBT is stored before anything is signed.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// changeIndex is the wallet's next unused change index: after the last one with a history,
// skipping those paid by a proposal, and within the watcher's lookahead (else Analyze would not
// know the output as change).
func (e *Engine) changeIndex(ctx context.Context, used map[string]bool) (uint32, error) {
	last, ok, err := e.db.LastUsedIndex(ctx, psbt.ChangeBranch)
	if err != nil {
		return 0, err
	}
	i := uint32(0)
	if ok {
		i = last + 1
	}
	for ; ; i++ {
		script, err := e.desc.PkScript(psbt.ChangeBranch, i)
		if err != nil {
			return 0, fmt.Errorf("psbtflow: change address %d: %w", i, err)
		}
		if _, _, tracked := e.chain.Lookup(script); !tracked {
			return 0, fmt.Errorf("psbtflow: no unused change address within the watcher's lookahead (at index %d); raise COSIGNER_LOOKAHEAD", i)
		}
		if !used[string(script)] {
			return i, nil
		}
	}
}

// destination is the script an automation pays: its address, or its named descriptor's first
// receive address not paid by any proposal yet.
func (e *Engine) destination(a policy.Automation, used map[string]bool) ([]byte, error) {
	to := a.Action.To
	if to.Descriptor == nil {
		if len(to.PkScript) == 0 {
			return nil, fmt.Errorf("%w: automation %q has no destination", ErrAutomation, a.Name)
		}
		return to.PkScript, nil
	}
	for i := uint32(0); i < maxDestinationIndex; i++ {
		s, err := e.dests.script(to.Descriptor.Descriptor, e.desc.Network(), i)
		if err != nil {
			return nil, fmt.Errorf("%w: automation %q: destination %s at %d: %v", ErrAutomation, a.Name, to.Text, i, err)
		}
		if !used[string(s)] {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: automation %q: destination %s has no unused address", ErrAutomation, a.Name, to.Text)
}

// maxDestinationIndex bounds the receive addresses of a named descriptor an automation pays.
const maxDestinationIndex = 100_000

// destCache keeps the named descriptors automations pay, parsed, and their receive scripts
// derived so far (index 0 up), by descriptor text: each build walks them from index 0 to the
// first one no proposal paid, so they are derived once. At most one script per proposal that
// paid the descriptor, plus one. Safe for concurrent use.
type destCache struct {
	mu sync.Mutex
	m  map[string]*destScripts
}

type destScripts struct {
	d       *descriptor.Descriptor
	scripts [][]byte
}

// script is the receive script (branch 0) at index i of the descriptor text on net.
func (c *destCache) script(text string, net *chaincfg.Params, i uint32) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*destScripts{}
	}
	ds := c.m[text]
	if ds == nil {
		d, err := descriptor.Parse(text, net)
		if err != nil {
			return nil, err
		}
		ds = &destScripts{d: d}
		c.m[text] = ds
	}
	for uint32(len(ds.scripts)) <= i {
		s, err := ds.d.PkScript(0, uint32(len(ds.scripts)))
		if err != nil {
			return nil, err
		}
		ds.scripts = append(ds.scripts, s)
	}
	return ds.scripts[i], nil
}

// limitFeeRate is the strictest limits.max_feerate of the policies in force, 0 when none is set.
func (e *Engine) limitFeeRate() policy.FeeRate {
	if l := e.policy().MaxFeeRateAt(e.now()); l.Set {
		return l.V
	}
	return 0
}

// AutomationFeeRate is the feerate an automation builds with: the server's estimate for its
// target (or its fallback when there is none), never above its max_feerate nor the policy's
// limits.max_feerate (when set), never below 1 sat/vB.
func AutomationFeeRate(a policy.Automation, est electrum.FeeEstimate, limitMax policy.FeeRate) psbt.FeeRate {
	rate := psbt.FeeRate(est.Rate)
	if !est.Estimated {
		rate = psbt.FeeRate(a.Fee.Fallback)
		if rate <= 0 {
			rate = 2
		}
	}
	return max(1, min(rate, FeeCeiling(a, limitMax)))
}

// FeeCeiling is the highest feerate an automation may pay: its fee.max_feerate (default
// 100 sat/vB), lowered to the policy's limits.max_feerate when that is set (limitMax > 0).
func FeeCeiling(a policy.Automation, limitMax policy.FeeRate) psbt.FeeRate {
	ceiling := psbt.FeeRate(a.Fee.MaxFeeRate)
	if ceiling <= 0 {
		ceiling = 100
	}
	if limitMax > 0 && psbt.FeeRate(limitMax) < ceiling {
		ceiling = psbt.FeeRate(limitMax)
	}
	return ceiling
}

// buildPlan is what a proposal's PSBT is built from, decided from the automation in force,
// the policy's feerate limit, the fee estimate at the current tip, the wallet's spendable coins
// and the proposals in flight. A PSBT pre-built from a plan is used only when the plan made
// again at build time is the same (sameAs; prebuild.go).
type buildPlan struct {
	auto     policy.Automation
	limitMax policy.FeeRate
	rate     psbt.FeeRate
	coins    []psbt.UTXO
	payTo    []byte
	reserve  btcutil.Amount
	// used has every output script of every proposal (and payTo for a consolidation): a change
	// index is chosen outside it.
	used map[string]bool
}

// plan decides what proposal p's PSBT spends and pays. A non-empty abandon is why p cannot be
// built (the proposal is abandoned with it); err a failure to retry.
func (e *Engine) plan(ctx context.Context, p store.Proposal, a policy.Automation) (pl buildPlan, abandon string, err error) {
	if _, err := e.needed(a); err != nil {
		return pl, err.Error(), nil
	}
	target := a.Fee.TargetBlocks
	if target <= 0 {
		target = 6
	}
	pl.auto, pl.limitMax = a, e.limitFeeRate()
	pl.rate = AutomationFeeRate(a, e.estimateFee(ctx, target), pl.limitMax)
	taken, err := e.takenInputs(ctx)
	if err != nil {
		return pl, "", err
	}
	if pl.used, err = e.usedOutputs(ctx); err != nil {
		return pl, "", err
	}
	tip := e.chain.Tip()
	next := chainwatch.Tip{Height: tip.Height + 1}
	switch a.Action.Kind {
	case policy.ActionSweep, policy.ActionForward:
		op, isFunding := FundingOutPoint(p.TriggerKey)
		if a.Action.Kind == policy.ActionForward && !isFunding {
			return pl, fmt.Sprintf("forward needs a funding trigger, not %s", p.TriggerKey), nil
		}
		for _, u := range e.chain.SpendableUTXOs() {
			trig := isFunding && u.OutPoint == op
			if a.Action.Kind == policy.ActionForward && !trig {
				continue
			}
			if !trig && u.Confirmations(tip) < 1 || !u.Mature(next) {
				continue
			}
			if by, ok := taken[u.OutPoint]; ok {
				if trig {
					return pl, fmt.Sprintf("%s: the deposit %s is already spent by proposal %s", ReasonInsufficientFunds, op, by), nil
				}
				continue
			}
			pl.coins = append(pl.coins, toCoin(u))
		}
		if a.Action.Kind == policy.ActionSweep {
			pl.reserve = a.Action.Reserve
		}
		if pl.payTo, err = e.destination(a, pl.used); err != nil {
			return pl, err.Error(), nil
		}
	case policy.ActionConsolidate:
		if a.Action.MaxFeeRate > 0 && pl.rate > psbt.FeeRate(a.Action.MaxFeeRate) {
			return pl, fmt.Sprintf("feerate_too_high: %.1f sat/vB is above the consolidation limit %.1f sat/vB", float64(pl.rate), float64(a.Action.MaxFeeRate)), nil
		}
		for _, u := range e.chain.SpendableUTXOs() {
			if _, ok := taken[u.OutPoint]; ok || u.Confirmations(tip) < 1 || !u.Mature(next) || u.Value >= a.Action.Below {
				continue
			}
			pl.coins = append(pl.coins, toCoin(u))
		}
		if n := max(a.Action.MinInputs, 2); len(pl.coins) < n {
			return pl, fmt.Sprintf("%s: %d coins below %s, consolidation needs %d", ReasonInsufficientFunds, len(pl.coins), a.Action.Below, n), nil
		}
		idx, err := e.changeIndex(ctx, pl.used)
		if err != nil {
			return pl, "", err
		}
		if pl.payTo, err = e.desc.PkScript(psbt.ChangeBranch, idx); err != nil {
			return pl, "", err
		}
		pl.used[string(pl.payTo)] = true
	default:
		return pl, fmt.Sprintf("unknown action %q", a.Action.Kind), nil
	}
	if len(pl.coins) == 0 {
		return pl, ReasonInsufficientFunds + ": no confirmed coin free to spend", nil
	}
	return pl, "", nil
}

// build selects the coins and writes the unsigned PSBT (state stays proposed): the one
// pre-built when the deposit was seen if nothing it relied on changed (prebuild.go), else a new
// one.
func (e *Engine) build(ctx context.Context, p store.Proposal, a policy.Automation) (bool, error) {
	if txid, op, ok := ParseInvalidationKey(p.TriggerKey); ok {
		return e.buildInvalidation(ctx, p, a, txid, op) // invalidate.go
	}
	pl, abandon, err := e.plan(ctx, p, a)
	if err != nil {
		return false, err
	}
	if abandon != "" {
		return true, e.abandon(ctx, p, abandon)
	}
	detail := ""
	pk, err := e.usePrebuilt(ctx, p, pl)
	if err != nil {
		return false, err
	}
	if pk != nil {
		detail = "; pre-built while the deposit was unconfirmed"
	} else if pk, _, err = e.buildPSBT(ctx, pl.coins, pl.payTo, pl.reserve, pl.rate, pl.used); err != nil {
		if reason, ok := buildRefusal(err); ok {
			return true, e.abandon(ctx, p, reason)
		}
		return false, err
	}
	return true, e.storeBuilt(ctx, p, pk, pl.rate, fmt.Sprintf("%d inputs at %.1f sat/vB%s", len(pk.UnsignedTx.TxIn), float64(pl.rate), detail))
}

// buildRefusal says why a proposal is abandoned when building its PSBT failed with err, and
// false when err is a failure to retry.
func buildRefusal(err error) (string, bool) {
	switch {
	case errors.Is(err, psbt.ErrInsufficientFunds) || errors.Is(err, psbt.ErrDustOutput) || errors.Is(err, psbt.ErrTooManyInputs):
		return ReasonInsufficientFunds + ": " + strings.TrimPrefix(err.Error(), "psbtflow: "), true
	case errors.Is(err, psbt.ErrUnsupportedDescriptor) || errors.Is(err, psbt.ErrPayment) || errors.Is(err, psbt.ErrSelectParams):
		// Building again would fail the same way (an unsupported descriptor, a destination of
		// another network, a descriptor without a change branch).
		return "cannot build: " + strings.TrimPrefix(err.Error(), "psbtflow: "), true
	}
	return "", false
}

func toCoin(u chainwatch.UTXO) psbt.UTXO {
	return psbt.UTXO{OutPoint: u.OutPoint, Coin: psbt.Coin{Value: u.Value, PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height}}
}

// buildPSBT sweeps coins to payTo at rate, keeping reserve as change at the next change index,
// which it returns (-1 without change).
func (e *Engine) buildPSBT(ctx context.Context, coins []psbt.UTXO, payTo []byte, reserve btcutil.Amount, rate psbt.FeeRate, used map[string]bool) (*btcpsbt.Packet, int64, error) {
	pays := []psbt.Payment{{PkScript: payTo}}
	params, err := psbt.NewSelectParams(e.desc, pays)
	if err != nil {
		return nil, -1, err
	}
	params.Mode, params.Reserve = psbt.SelectSweep, reserve
	sel, err := psbt.Select(coins, 0, rate, params)
	if err != nil {
		return nil, -1, err
	}
	var changeIdx uint32
	change := int64(-1)
	if sel.Change > 0 {
		if changeIdx, err = e.changeIndex(ctx, used); err != nil {
			return nil, -1, err
		}
		change = int64(changeIdx)
	}
	pk, err := psbt.Build(ctx, e.desc, sel, pays, psbt.BuildOptions{ChangeIndex: changeIdx, TipHeight: e.chain.TipHeight()}, e.prev)
	return pk, change, err
}

// storeBuilt stores the unsigned PSBT of proposal p (state proposed).
func (e *Engine) storeBuilt(ctx context.Context, p store.Proposal, pk *btcpsbt.Packet, rate psbt.FeeRate, detail string) error {
	var buf bytes.Buffer
	if err := pk.Serialize(&buf); err != nil {
		return err
	}
	fee, _ := pk.GetTxFee()
	from := p.State
	p.PSBT, p.UnsignedTxID, p.FeeSat, p.FeeRate, p.UpdatedAt = buf.Bytes(), pk.UnsignedTx.TxHash().String(), int64(fee), float64(rate), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: "built", Detail: detail}}}); err != nil {
		return err
	}
	e.log.Info("proposal built", "proposal", p.ID, "automation", p.Automation, "unsigned_txid", p.UnsignedTxID, "fee_sat", p.FeeSat, "detail", detail)
	return nil
}
