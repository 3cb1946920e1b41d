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

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"

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
	d, err := descriptor.Parse(to.Descriptor.Descriptor, e.desc.Network())
	if err != nil {
		return nil, fmt.Errorf("%w: automation %q: destination %s: %v", ErrAutomation, a.Name, to.Text, err)
	}
	for i := uint32(0); i < 100_000; i++ {
		s, err := d.PkScript(0, i)
		if err != nil {
			return nil, fmt.Errorf("%w: automation %q: destination %s at %d: %v", ErrAutomation, a.Name, to.Text, i, err)
		}
		if !used[string(s)] {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: automation %q: destination %s has no unused address", ErrAutomation, a.Name, to.Text)
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

// build selects the coins and writes the unsigned PSBT (state stays proposed).
func (e *Engine) build(ctx context.Context, p store.Proposal, a policy.Automation) (bool, error) {
	if txid, op, ok := ParseInvalidationKey(p.TriggerKey); ok {
		return e.buildInvalidation(ctx, p, a, txid, op) // invalidate.go
	}
	if _, err := e.needed(a); err != nil {
		return true, e.abandon(ctx, p, err.Error())
	}
	target := a.Fee.TargetBlocks
	if target <= 0 {
		target = 6
	}
	rate := AutomationFeeRate(a, e.chain.EstimateFee(ctx, target), e.limitFeeRate())
	taken, err := e.takenInputs(ctx)
	if err != nil {
		return false, err
	}
	used, err := e.usedOutputs(ctx)
	if err != nil {
		return false, err
	}
	tip := e.chain.Tip()
	next := chainwatch.Tip{Height: tip.Height + 1}
	var coins []psbt.UTXO
	reserve := btcutil.Amount(0)
	var payTo []byte
	switch a.Action.Kind {
	case policy.ActionSweep, policy.ActionForward:
		op, isFunding := FundingOutPoint(p.TriggerKey)
		if a.Action.Kind == policy.ActionForward && !isFunding {
			return true, e.abandon(ctx, p, fmt.Sprintf("forward needs a funding trigger, not %s", p.TriggerKey))
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
					return true, e.abandon(ctx, p, fmt.Sprintf("%s: the deposit %s is already spent by proposal %s", ReasonInsufficientFunds, op, by))
				}
				continue
			}
			coins = append(coins, toCoin(u))
		}
		if a.Action.Kind == policy.ActionSweep {
			reserve = a.Action.Reserve
		}
		if payTo, err = e.destination(a, used); err != nil {
			return true, e.abandon(ctx, p, err.Error())
		}
	case policy.ActionConsolidate:
		if a.Action.MaxFeeRate > 0 && rate > psbt.FeeRate(a.Action.MaxFeeRate) {
			return true, e.abandon(ctx, p, fmt.Sprintf("feerate_too_high: %.1f sat/vB is above the consolidation limit %.1f sat/vB", float64(rate), float64(a.Action.MaxFeeRate)))
		}
		for _, u := range e.chain.SpendableUTXOs() {
			if _, ok := taken[u.OutPoint]; ok || u.Confirmations(tip) < 1 || !u.Mature(next) || u.Value >= a.Action.Below {
				continue
			}
			coins = append(coins, toCoin(u))
		}
		if n := max(a.Action.MinInputs, 2); len(coins) < n {
			return true, e.abandon(ctx, p, fmt.Sprintf("%s: %d coins below %s, consolidation needs %d", ReasonInsufficientFunds, len(coins), a.Action.Below, n))
		}
		idx, err := e.changeIndex(ctx, used)
		if err != nil {
			return false, err
		}
		if payTo, err = e.desc.PkScript(psbt.ChangeBranch, idx); err != nil {
			return false, err
		}
		used[string(payTo)] = true
	default:
		return true, e.abandon(ctx, p, fmt.Sprintf("unknown action %q", a.Action.Kind))
	}
	if len(coins) == 0 {
		return true, e.abandon(ctx, p, ReasonInsufficientFunds+": no confirmed coin free to spend")
	}
	pk, err := e.buildPSBT(ctx, coins, payTo, reserve, rate, used)
	if err != nil {
		if errors.Is(err, psbt.ErrInsufficientFunds) || errors.Is(err, psbt.ErrDustOutput) || errors.Is(err, psbt.ErrTooManyInputs) {
			return true, e.abandon(ctx, p, ReasonInsufficientFunds+": "+strings.TrimPrefix(err.Error(), "psbtflow: "))
		}
		if errors.Is(err, psbt.ErrUnsupportedDescriptor) || errors.Is(err, psbt.ErrPayment) || errors.Is(err, psbt.ErrSelectParams) {
			// Building again would fail the same way (an unsupported descriptor, a destination of
			// another network, a descriptor without a change branch).
			return true, e.abandon(ctx, p, "cannot build: "+strings.TrimPrefix(err.Error(), "psbtflow: "))
		}
		return false, err
	}
	return true, e.storeBuilt(ctx, p, pk, rate, fmt.Sprintf("%d inputs at %.1f sat/vB", len(pk.UnsignedTx.TxIn), float64(rate)))
}

func toCoin(u chainwatch.UTXO) psbt.UTXO {
	return psbt.UTXO{OutPoint: u.OutPoint, Coin: psbt.Coin{Value: u.Value, PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height}}
}

// buildPSBT sweeps coins to payTo at rate, keeping reserve as change (at the next change index).
func (e *Engine) buildPSBT(ctx context.Context, coins []psbt.UTXO, payTo []byte, reserve btcutil.Amount, rate psbt.FeeRate, used map[string]bool) (*btcpsbt.Packet, error) {
	pays := []psbt.Payment{{PkScript: payTo}}
	params, err := psbt.NewSelectParams(e.desc, pays)
	if err != nil {
		return nil, err
	}
	params.Mode, params.Reserve = psbt.SelectSweep, reserve
	sel, err := psbt.Select(coins, 0, rate, params)
	if err != nil {
		return nil, err
	}
	var changeIdx uint32
	if sel.Change > 0 {
		if changeIdx, err = e.changeIndex(ctx, used); err != nil {
			return nil, err
		}
	}
	return psbt.Build(ctx, e.desc, sel, pays, psbt.BuildOptions{ChangeIndex: changeIdx, TipHeight: e.chain.TipHeight()}, e.prev)
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
