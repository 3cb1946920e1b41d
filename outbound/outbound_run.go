package outbound

// Outbound proposals, the shell (issue 6): for each proposal in flight it gathers the facts
// (chain, signatures, tip), asks Next what to do, does it, and stores the result with one
// store.ChangeProposal guarded by the state it expected. Build (Select + Build), sign our share
// through the same Service path as an inbound sign_psbt (client "automation:<name>"), ask the
// co-signers in parallel (CosignerAsker), combine as answers arrive, finalize at the threshold,
// broadcast through the watcher, follow to confirmation, bump the fee by RBF. The loop is in
// engine.go, building in build.go, signatures in cosigners.go; this file holds the facts, the
// stored state changes, finalize and broadcast.
//
// Crash safety: every external effect is preceded by the stored state it needs to be repeated
// safely — the unsigned PSBT before our signature (the Service answers the same request the same
// way), the co-signer request ids before asking (they answer the same request again), the final
// transaction before broadcasting (a finalized proposal is broadcast again, never rebuilt).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// facts gathers what Next needs about p, and its stored PSBT while it is being signed (states
// proposed and awaiting_cosigners; nil otherwise, and before it is built).
func (e *Engine) facts(ctx context.Context, p store.Proposal, a policy.Automation) (Facts, *btcpsbt.Packet, error) {
	f := Facts{State: ProposalState(p.State), Tip: e.chain.TipHeight(), BroadcastHeight: p.BroadcastHeight, BumpAfter: a.BumpAfter}
	sh, built, err := e.shapeOf(p)
	if !built || err != nil {
		return f, nil, err
	}
	f.Built = true
	var pk *btcpsbt.Packet
	if f.State == StateProposed || f.State == StateAwaitingCosigners {
		if pk, err = storedPSBT(p); err != nil {
			return f, nil, err
		}
	}
	if f.State == StateAwaitingCosigners {
		if f.Needed, err = e.needed(a); err != nil {
			f.Needed = 0
		}
		if f.Signatures, err = psbt.Signatures(e.desc, pk); err != nil {
			return f, nil, fmt.Errorf("psbtflow: proposal %s: count signatures: %w", p.ID, err)
		}
	}
	f.Seen, f.Confs = e.txConfs(sh.txid)
	spent := false
	for _, op := range sh.ins {
		if _, ok := e.chain.Coin(op); !ok {
			spent = true
			break
		}
	}
	// Its fee bumps matter only once it is broadcast (BumpLive) or when its inputs are spent by
	// another transaction (one of them?): reading them costs a scan of the proposals.
	var bumps []store.Proposal
	if f.State == StateBroadcast || spent && !f.Seen {
		if bumps, err = e.bumpsOf(ctx, p.ID); err != nil {
			return f, nil, err
		}
	}
	for _, b := range bumps {
		if Live(b.State) {
			f.BumpLive = true
		}
	}
	if !spent || f.Seen {
		delete(e.conflicts, p.ID)
		return f, pk, nil
	}
	// Some input is spent, not by this transaction (as far as the watcher knows).
	for _, b := range bumps {
		if bt, err := chainhash.NewHashFromStr(b.UnsignedTxID); err == nil {
			if seen, confs := e.txConfs(*bt); confs > 0 {
				f.Conflict = ConflictBumpConfirmed
				return f, pk, nil
			} else if seen {
				return f, pk, nil // our bump is in the mempool
			}
		}
	}
	if p.Replaces != "" {
		if orig, err := e.db.GetProposal(ctx, p.Replaces); err == nil {
			if ot, err := chainhash.NewHashFromStr(orig.UnsignedTxID); err == nil {
				if seen, confs := e.txConfs(*ot); confs > 0 {
					f.Conflict = ConflictOriginalConfirmed
					return f, pk, nil
				} else if seen {
					return f, pk, nil // the original is in the mempool: a bump spends its inputs
				}
			}
		}
	}
	e.conflicts[p.ID]++
	if e.conflicts[p.ID] >= 2 {
		f.Conflict = ConflictElsewhere
	}
	return f, pk, nil
}

// txConfs reports whether txid is in the wallet's history and its confirmations on the
// watcher's header chain (0 unless its merkle proof checked).
func (e *Engine) txConfs(txid chainhash.Hash) (bool, int32) { return txConfs(e.chain, txid) }

func txConfs(chain Chain, txid chainhash.Hash) (bool, int32) {
	st, ok := chain.Tx(txid)
	if !ok {
		return false, 0
	}
	if !st.Verified || st.Height <= 0 {
		return true, 0
	}
	return true, max(0, chain.TipHeight()-st.Height+1)
}

func (e *Engine) bumpsOf(ctx context.Context, id string) ([]store.Proposal, error) {
	all, err := e.db.Proposals(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Proposal
	for _, q := range all {
		if q.Replaces == id {
			out = append(out, q)
		}
	}
	return out, nil
}

// move stores p's change to state to with one timeline entry (event, detail), and notifies.
func (e *Engine) move(ctx context.Context, p store.Proposal, to ProposalState, event, detail string, notice NoticeKind) error {
	if err := checkTransition(ProposalState(p.State), to); err != nil {
		return err
	}
	from := p.State
	p.State, p.UpdatedAt = string(to), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: event, Detail: detail}}}); err != nil {
		return err
	}
	e.log.Info("proposal "+event, "proposal", p.ID, "automation", p.Automation, "state", to, "txid", p.TxID, "detail", detail)
	if notice != "" {
		text := fmt.Sprintf("proposal %s (%s): %s", p.ID, p.Automation, event)
		if p.TxID != "" {
			text += " — txid " + p.TxID
		}
		if detail != "" {
			text += " — " + detail
		}
		e.tell(ctx, p, notice, text)
	}
	return nil
}

func (e *Engine) abandon(ctx context.Context, p store.Proposal, reason string) error {
	from := p.State
	if err := checkTransition(ProposalState(from), StateAbandoned); err != nil {
		return err
	}
	p.State, p.Reason, p.UpdatedAt = string(StateAbandoned), reason, e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: "abandoned", Detail: reason}}}); err != nil {
		return err
	}
	e.log.Warn("proposal abandoned", "proposal", p.ID, "automation", p.Automation, "reason", reason)
	e.tell(ctx, p, NoticeAbandoned, fmt.Sprintf("proposal %s (%s) abandoned: %s", p.ID, p.Automation, reason))
	return nil
}

// tell sends a notice (bounded in time) and records it in the timeline.
func (e *Engine) tell(ctx context.Context, p store.Proposal, kind NoticeKind, text string) {
	if e.notify == nil {
		return
	}
	nctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	e.notify.Notify(nctx, Notice{Kind: kind, ProposalID: p.ID, Automation: p.Automation, Text: text})
	if err := e.db.AddProposalEvent(ctx, store.ProposalEvent{ProposalID: p.ID, At: e.now(), Event: "notified", Detail: string(kind)}); err != nil {
		e.log.Warn("timeline", "proposal", p.ID, "error", err)
	}
}

// takenInputs maps each input of a live proposal's PSBT to the proposal's id.
func (e *Engine) takenInputs(ctx context.Context) (map[wire.OutPoint]string, error) {
	out := map[wire.OutPoint]string{}
	err := e.eachShape(ctx, func(p store.Proposal, sh txShape) {
		for _, op := range sh.ins {
			out[op] = p.ID
		}
	}, string(StateProposed), string(StateAwaitingCosigners), string(StateFinalized), string(StateBroadcast))
	return out, err
}

// usedOutputs lists the output scripts of every proposal's PSBT (any state), so that a
// destination or change index is not reused.
func (e *Engine) usedOutputs(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := e.eachShape(ctx, func(_ store.Proposal, sh txShape) {
		for _, o := range sh.outs {
			out[string(o)] = true
		}
	})
	return out, err
}

// eachShape calls f with every built proposal in the given states (any state with none) and
// the shape of its unsigned transaction. Errors: the database's, or a stored PSBT that does not
// decode.
func (e *Engine) eachShape(ctx context.Context, f func(store.Proposal, txShape), states ...string) error {
	ps, err := e.db.Proposals(ctx, states...)
	if err != nil {
		return err
	}
	for _, p := range ps {
		sh, built, err := e.shapeOf(p)
		if err != nil {
			return err
		}
		if built {
			f(p, sh)
		}
	}
	return nil
}

// txShape is what the engine reads of a built proposal's unsigned transaction on every pass:
// its txid, the outpoints it spends and the scripts it pays.
type txShape struct {
	txid chainhash.Hash
	ins  []wire.OutPoint
	outs [][]byte
}

// shapeCache keeps the txShape of built proposals by "id unsigned-txid": the unsigned
// transaction of a PSBT stored under an unsigned txid is that transaction (signatures added to
// the PSBT leave it as it is), so it is decoded once rather than on every pass. One small entry
// per built proposal, as the store's rows. Safe for concurrent use.
type shapeCache struct {
	mu sync.Mutex
	m  map[string]txShape
}

// shapeOf returns the shape of proposal p's unsigned transaction (built false before it is
// built). Errors: a stored PSBT that does not decode.
func (e *Engine) shapeOf(p store.Proposal) (txShape, bool, error) {
	if len(p.PSBT) == 0 {
		return txShape{}, false, nil
	}
	key := p.ID + " " + p.UnsignedTxID
	e.shapes.mu.Lock()
	sh, ok := e.shapes.m[key]
	e.shapes.mu.Unlock()
	if ok {
		return sh, true, nil
	}
	pk, err := storedPSBT(p)
	if err != nil {
		return txShape{}, false, err
	}
	tx := pk.UnsignedTx
	sh.txid = tx.TxHash()
	for _, in := range tx.TxIn {
		sh.ins = append(sh.ins, in.PreviousOutPoint)
	}
	for _, o := range tx.TxOut {
		sh.outs = append(sh.outs, o.PkScript)
	}
	if sh.txid.String() == p.UnsignedTxID {
		e.shapes.mu.Lock()
		if e.shapes.m == nil {
			e.shapes.m = map[string]txShape{}
		}
		e.shapes.m[key] = sh
		e.shapes.mu.Unlock()
	}
	return sh, true, nil
}

// storedPSBT decodes proposal p's stored PSBT (nil, nil before it is built).
func storedPSBT(p store.Proposal) (*btcpsbt.Packet, error) {
	if len(p.PSBT) == 0 {
		return nil, nil
	}
	pk, err := btcpsbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
	if err != nil {
		return nil, fmt.Errorf("psbtflow: proposal %s: stored PSBT: %w", p.ID, err)
	}
	return pk, nil
}

// finalize plays the Finalizer and Extractor and stores the network transaction (finalized).
func (e *Engine) finalize(ctx context.Context, p store.Proposal, pk *btcpsbt.Packet) error {
	tx, err := e.finalTx(p.ID, pk)
	if err != nil {
		return err
	}
	p.FinalTx, p.TxID = tx.raw, tx.id
	return e.move(ctx, p, StateFinalized, "finalized", p.TxID, "")
}

// finalized is a network transaction: serialized, and its txid.
type finalized struct {
	raw []byte
	id  string
}

// finalTx plays the Finalizer and Extractor on proposal id's PSBT pk (psbt.Finalize: every
// signature verified, exactly the threshold, the extracted transaction run through the script
// engine).
func (e *Engine) finalTx(id string, pk *btcpsbt.Packet) (finalized, error) {
	tx, err := psbt.Finalize(e.desc, pk)
	if err != nil {
		return finalized{}, fmt.Errorf("psbtflow: finalize proposal %s: %w", id, err)
	}
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		return finalized{}, err
	}
	return finalized{raw: buf.Bytes(), id: tx.TxHash().String()}, nil
}

// broadcast sends the stored final transaction ("already known" counts as sent) and moves the
// proposal to broadcast (recording the tip height the first time).
func (e *Engine) broadcast(ctx context.Context, p store.Proposal) (bool, error) {
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(p.FinalTx)); err != nil {
		return false, fmt.Errorf("psbtflow: proposal %s: stored transaction: %w", p.ID, err)
	}
	if _, err := e.chain.Broadcast(ctx, &tx); err != nil && !errors.Is(err, electrum.ErrTxAlreadyKnown) {
		if seen, _ := e.txConfs(tx.TxHash()); !seen {
			if p.Replaces != "" && p.State == string(StateFinalized) && errors.Is(err, electrum.ErrFeeTooLow) {
				// A fee bump that does not pay enough over what it replaces: abandoned; the next
				// bump starts above it.
				return true, e.abandon(ctx, p, ReasonFeeTooLow+": "+err.Error())
			}
			return false, err
		}
	}
	if p.State == string(StateBroadcast) {
		e.log.Info("proposal sent again", "proposal", p.ID, "txid", p.TxID)
		return false, nil
	}
	if p.BroadcastHeight == 0 {
		p.BroadcastHeight = e.chain.TipHeight()
	}
	return true, e.move(ctx, p, StateBroadcast, "broadcast", p.TxID, NoticeBroadcast)
}
