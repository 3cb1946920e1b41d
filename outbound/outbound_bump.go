package outbound

// Fee bumps (BIP-125 replace-by-fee) of the engine's own broadcast transactions: when a
// proposal stays unconfirmed bump_after blocks, a new proposal (replaces = its id, trigger key
// "bump:<id>") spends the same coins to the same destination at a higher feerate, within the
// automation's and the policy's fee caps. It goes through the same steps (our signature under
// the policy — the spend ledger counts a replacement once —, the co-signers, finalize,
// broadcast). The old proposal stays broadcast until one of the two confirms: the bump
// confirming makes it replaced; the old one confirming abandons the bump. A bump the network
// refuses as paying too little is abandoned (fee_too_low) and the next one starts above it
// (trigger keys bump:<id>, bump:<id>:2, …).

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// IncrementalRelayFeeRate is the default incremental relay feerate of Bitcoin Core and btcd
// (sat/vB): a replacement must pay at least this much more than the transactions it replaces,
// per vbyte of its own size (BIP-125 rule 4).
const IncrementalRelayFeeRate psbt.FeeRate = 1

// BumpFeeRate is the feerate of a replacement of a transaction paying oldFee at oldRate: the
// larger of the new estimate and 1.25 × oldRate, and at least oldRate + the incremental relay
// feerate (BIP-125 rules 3 and 4 for a replacement of the same size); ok is false when that is
// above ceiling (the fee caps): the transaction cannot be bumped further. Pure.
func BumpFeeRate(oldRate, estimate, ceiling psbt.FeeRate) (psbt.FeeRate, bool) {
	floor := oldRate + IncrementalRelayFeeRate
	rate := max(estimate, oldRate*1.25, floor)
	rate = psbt.FeeRate(math.Ceil(float64(rate)*10) / 10)
	if rate > ceiling {
		if floor <= ceiling {
			return ceiling, true
		}
		return 0, false
	}
	return rate, true
}

// bump creates the fee-bump proposal of p (broadcast, unconfirmed past bump_after).
func (e *Engine) bump(ctx context.Context, p store.Proposal, a policy.Automation, pk *btcpsbt.Packet) error {
	target := a.Fee.TargetBlocks
	if target <= 0 {
		target = 6
	}
	est := AutomationFeeRate(a, e.estimateFee(ctx, target), e.limitFeeRate())
	ceiling := FeeCeiling(a, e.limitFeeRate())
	// Bumps the network refused as paying too little (its incremental relay fee is higher than
	// ours, e.g. btcd's is its minrelaytxfee) raise the floor: the next one pays more.
	bumps, err := e.bumpsOf(ctx, p.ID)
	if err != nil {
		return err
	}
	oldRate, oldFee := psbt.FeeRate(p.FeeRate), p.FeeSat
	for _, b := range bumps {
		if b.State == string(StateAbandoned) && strings.HasPrefix(b.Reason, ReasonFeeTooLow) {
			oldRate, oldFee = max(oldRate, psbt.FeeRate(b.FeeRate)), max(oldFee, b.FeeSat)
		}
	}
	rate, ok := BumpFeeRate(oldRate, est, ceiling)
	if !ok {
		if !e.noted["stuck:"+p.ID] {
			e.noted["stuck:"+p.ID] = true
			e.tell(ctx, p, NoticeStuck, fmt.Sprintf("proposal %s (%s): unconfirmed for %d blocks at %.1f sat/vB and the fee caps (%.1f sat/vB) allow no bump",
				p.ID, p.Automation, e.chain.TipHeight()-p.BroadcastHeight, p.FeeRate, float64(ceiling)))
		}
		return nil
	}
	coins, payTo, change, changeIdx, err := e.replayable(pk)
	if err != nil {
		return err
	}
	pays := []psbt.Payment{{PkScript: payTo}}
	params, err := psbt.NewSelectParams(e.desc, pays)
	if err != nil {
		return err
	}
	params.Mode, params.Reserve = psbt.SelectSweep, change
	sel, err := psbt.Select(coins, 0, rate, params)
	if err != nil {
		return fmt.Errorf("psbtflow: fee bump of %s: %w", p.ID, err)
	}
	if sel.Fee < btcutil.Amount(oldFee)+btcutil.Amount(math.Ceil(float64(IncrementalRelayFeeRate)*float64(sel.VSize))) {
		return fmt.Errorf("psbtflow: fee bump of %s: fee %s does not beat %d sat by the incremental relay fee", p.ID, sel.Fee, oldFee)
	}
	bpk, err := psbt.Build(ctx, e.desc, sel, pays, psbt.BuildOptions{ChangeIndex: changeIdx, TipHeight: e.chain.TipHeight()}, e.prev)
	if err != nil {
		return fmt.Errorf("psbtflow: fee bump of %s: %w", p.ID, err)
	}
	var buf bytes.Buffer
	if err := bpk.Serialize(&buf); err != nil {
		return err
	}
	key := "bump:" + p.ID
	if len(bumps) > 0 {
		key += ":" + strconv.Itoa(len(bumps)+1)
	}
	nb := store.Proposal{ID: ProposalID(p.Automation, key), Automation: p.Automation, TriggerKey: key, State: string(StateProposed), Replaces: p.ID, PSBT: buf.Bytes(),
		UnsignedTxID: bpk.UnsignedTx.TxHash().String(), FeeSat: int64(sel.Fee), FeeRate: float64(rate), CreatedAt: e.now()}
	detail := fmt.Sprintf("fee bump of %s: %.1f → %.1f sat/vB (%d → %d sat)", p.ID, p.FeeRate, float64(rate), p.FeeSat, int64(sel.Fee))
	q, created, err := e.db.CreateProposal(ctx, nb, detail)
	if err != nil {
		return err
	}
	if created {
		if err := e.db.AddProposalEvent(ctx, store.ProposalEvent{ProposalID: p.ID, At: e.now(), Event: "bumped", Detail: q.ID}); err != nil {
			return err
		}
		e.log.Info("fee bump proposed", "proposal", p.ID, "bump", q.ID, "detail", detail)
		e.wakeProposal(q.ID)
	}
	return nil
}

// replayable reads back from a built PSBT the coins it spends (with their place in the wallet),
// the destination it pays, and its change (value and index; 0 when none).
func (e *Engine) replayable(pk *btcpsbt.Packet) (coins []psbt.UTXO, payTo []byte, change btcutil.Amount, changeIdx uint32, err error) {
	for i, in := range pk.UnsignedTx.TxIn {
		wu := pk.Inputs[i].WitnessUtxo
		if wu == nil {
			return nil, nil, 0, 0, fmt.Errorf("psbtflow: input %d has no witness UTXO", i)
		}
		br, idx, ok := e.chain.Lookup(wu.PkScript)
		if !ok {
			return nil, nil, 0, 0, fmt.Errorf("psbtflow: input %d is not a tracked script", i)
		}
		coins = append(coins, psbt.UTXO{OutPoint: in.PreviousOutPoint, Coin: psbt.Coin{Value: btcutil.Amount(wu.Value), PkScript: wu.PkScript, Branch: br, Index: idx}})
	}
	outs := pk.UnsignedTx.TxOut
	for j, o := range outs {
		br, idx, ok := e.chain.Lookup(o.PkScript)
		if len(outs) > 1 && ok && br == psbt.ChangeBranch && len(pk.Outputs[j].Bip32Derivation) > 0 {
			change, changeIdx = btcutil.Amount(o.Value), idx
			continue
		}
		payTo = o.PkScript
	}
	if payTo == nil {
		return nil, nil, 0, 0, fmt.Errorf("psbtflow: no destination output")
	}
	return coins, payTo, change, changeIdx, nil
}

// Replaceable returns the Service's view (psbtflow.WithReplaceable) of the coins spent by this
// co-signer's own broadcast, unconfirmed proposals, which their fee bumps spend again: a coin's
// value and script from the stored PSBT, its place from the chain's tracked scripts, its height
// from the funding transaction's state. It reads db and chain on every call and holds no
// Engine, so the Service can be built before the Engine that signs through it.
func Replaceable(db Store, chain Chain) func(op wire.OutPoint) (psbt.Coin, bool) {
	return func(op wire.OutPoint) (psbt.Coin, bool) {
		ps, err := db.Proposals(context.Background(), string(StateBroadcast))
		if err != nil {
			return psbt.Coin{}, false
		}
		for _, p := range ps {
			if seen, confs := txConfs(chain, mustHash(p.UnsignedTxID)); !seen || confs > 0 {
				continue
			}
			pk, err := btcpsbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
			if err != nil {
				continue
			}
			for i, in := range pk.UnsignedTx.TxIn {
				wu := pk.Inputs[i].WitnessUtxo
				if in.PreviousOutPoint != op || wu == nil {
					continue
				}
				br, idx, ok := chain.Lookup(wu.PkScript)
				if !ok {
					return psbt.Coin{}, false
				}
				c := psbt.Coin{Value: btcutil.Amount(wu.Value), PkScript: wu.PkScript, Branch: br, Index: idx}
				if st, ok := chain.Tx(op.Hash); ok && st.Verified && st.Height > 0 {
					c.Height = st.Height
				}
				return c, true
			}
		}
		return psbt.Coin{}, false
	}
}

func mustHash(s string) chainhash.Hash {
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}
	}
	return *h
}
