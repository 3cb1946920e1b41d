package outbound

// Signatures: this co-signer's share through psbtflow's decision (Signer.Decide, as client
// "automation:<name>"), then the other co-signers asked in parallel (CosignerAsker), their
// answers combined as they arrive, their refusals counted against the threshold.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// selfSign signs our share through the Service (policy, ledger, audit) as client
// "automation:<name>", request id "proposal:<id>"; on success it stores the signed PSBT and the
// co-signers' request ids (state awaiting_cosigners) in one transaction.
func (e *Engine) selfSign(ctx context.Context, p store.Proposal, a policy.Automation, pk *btcpsbt.Packet) (bool, error) {
	client := policy.AutomationClientPrefix + p.Automation
	signed, err := e.signer.Decide(ctx, client, "proposal:"+p.ID, pk)
	if url, reason, held := psbtflow.Held(err); held {
		if !e.noted[p.ID] {
			e.noted[p.ID] = true
			tl, _ := e.db.ProposalTimeline(ctx, p.ID)
			if len(tl) == 0 || tl[len(tl)-1].Event != "held" && tl[len(tl)-1].Event != "notified" {
				if err := e.db.AddProposalEvent(ctx, store.ProposalEvent{ProposalID: p.ID, At: e.now(), Event: "held", Detail: reason}); err != nil {
					return false, err
				}
				e.tell(ctx, p, NoticeHeld, fmt.Sprintf("proposal %s (%s) is held by this co-signer's policy: %s (%s)", p.ID, p.Automation, reason, url))
			}
		}
		return false, nil
	}
	if text, transient, refused := psbtflow.Refused(err); refused && !transient {
		e.tell(ctx, p, NoticeDenied, fmt.Sprintf("proposal %s (%s) denied by this co-signer's policy: %s", p.ID, p.Automation, text))
		return true, e.abandon(ctx, p, text)
	}
	if err != nil {
		return false, err // not synced, or a passing failure: try again
	}
	var buf bytes.Buffer
	if err := signed.Serialize(&buf); err != nil {
		return false, err
	}
	var cos []store.ProposalCosigner
	var evs []store.ProposalEvent
	evs = append(evs, store.ProposalEvent{Event: "self_signed", Detail: "signed under " + client})
	for _, uri := range a.Cosigners {
		bp, err := nip46.ParseBunkerURI(uri)
		if err != nil {
			return true, e.abandon(ctx, p, fmt.Sprintf("co-signer URI: %v", err))
		}
		cos = append(cos, store.ProposalCosigner{Cosigner: bp.RemoteSignerPubKey, BunkerURI: uri, RequestID: "proposal-" + p.ID + "-" + bp.RemoteSignerPubKey[:8],
			State: CosignerWaiting})
		evs = append(evs, store.ProposalEvent{Event: "requested", Detail: bp.RemoteSignerPubKey})
	}
	delete(e.noted, p.ID)
	from := p.State
	p.State, p.PSBT, p.UpdatedAt = string(StateAwaitingCosigners), buf.Bytes(), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Cosigners: cos, Events: evs}); err != nil {
		return false, err
	}
	e.log.Info("proposal signed by this co-signer", "proposal", p.ID, "automation", p.Automation, "cosigners", len(cos))
	return true, nil
}

// ask starts one request per co-signer that has not answered (and is not being asked).
func (e *Engine) ask(ctx context.Context, p store.Proposal, a policy.Automation, pk *btcpsbt.Packet) {
	if e.asker == nil && e.askerFor == nil {
		return
	}
	cos, err := e.db.ProposalCosigners(ctx, p.ID)
	if err != nil {
		e.log.Warn("read co-signers", "proposal", p.ID, "error", err)
		return
	}
	timeout := a.Timeout
	asker := e.askerOf(timeout)
	for _, c := range cos {
		if c.State == CosignerSigned || c.State == CosignerDenied {
			continue
		}
		key := p.ID + "/" + c.Cosigner
		actx, cancel := context.WithCancel(ctx)
		e.askMu.Lock()
		busy := e.asking[key] != nil || e.now().Before(e.retryAt[key])
		if !busy {
			e.asking[key] = cancel
		}
		e.askMu.Unlock()
		if busy {
			cancel()
			continue
		}
		cp, err := btcpsbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false) // the stored PSBT pk was read from, a copy per co-signer
		if err != nil {
			e.askMu.Lock()
			delete(e.asking, key)
			e.askMu.Unlock()
			cancel()
			e.log.Error("copy PSBT", "proposal", p.ID, "error", err)
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer cancel()
			e.askOne(actx, asker, p, c, pk.UnsignedTx.TxHash(), cp)
		}()
	}
}

// askerOf is the CosignerAsker for an automation's timeout (nil when there is none).
func (e *Engine) askerOf(timeout time.Duration) CosignerAsker {
	if e.askerFor != nil {
		return e.askerFor(timeout)
	}
	return e.asker
}

// warm connects, in the background, to the co-signers of automation a that are not connected
// (or being connected) yet, when its CosignerAsker can (CosignerWarmer).
func (e *Engine) warm(ctx context.Context, a policy.Automation) {
	w, ok := e.askerOf(a.Timeout).(CosignerWarmer)
	if !ok {
		return
	}
	for _, uri := range a.Cosigners {
		key := a.Timeout.String() + " " + uri
		e.askMu.Lock()
		busy := e.warmed[key]
		e.warmed[key] = true
		e.askMu.Unlock()
		if busy {
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := w.Warm(ctx, uri); err != nil {
				e.askMu.Lock()
				delete(e.warmed, key)
				e.askMu.Unlock()
				if ctx.Err() == nil {
					e.log.Warn("co-signer not connected ahead of time; connected when asked", "automation", a.Name, "error", err)
				}
			}
		}()
	}
}

// viewLagRetry is how long to wait before asking again a co-signer whose chain view lagged
// (unsafe_psbt: input_unspent) for the n-th time in a row (n ≥ 1): 250 ms, doubling, at most
// the engine's tick.
func (e *Engine) viewLagRetry(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < e.tick; i++ {
		d *= 2
	}
	return min(d, e.tick)
}

// askOne asks one co-signer and records its answer: its signatures combined into the
// proposal's PSBT — and the transaction finalized with them when they complete the threshold —,
// or its refusal (the proposal is abandoned when the others cannot make up the threshold), or a
// failure (asked again after RetryAfter). Its proposal is woken when it returns.
func (e *Engine) askOne(ctx context.Context, asker CosignerAsker, p store.Proposal, c store.ProposalCosigner, txid chainhash.Hash, pk *btcpsbt.Packet) {
	key := p.ID + "/" + c.Cosigner
	defer func() {
		e.askMu.Lock()
		delete(e.asking, key)
		e.askMu.Unlock()
		e.wakeProposal(p.ID)
	}()
	onHeld := func(url string) {
		c.State, c.Detail, c.UpdatedAt = CosignerHeld, url, e.now()
		if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c, store.ProposalEvent{Event: "held", Detail: c.Cosigner + " " + url}); err != nil {
			e.log.Warn("record held co-signer", "proposal", p.ID, "error", err)
			return
		}
		e.tell(ctx, p, NoticeHeld, fmt.Sprintf("proposal %s (%s): co-signer %s holds the request: %s", p.ID, p.Automation, c.Cosigner[:12], url))
	}
	got, err := asker.Ask(ctx, c.BunkerURI, c.RequestID, pk, onHeld)
	if ctx.Err() != nil {
		return
	}
	var re *Refusal
	lags := 0
	if errors.As(err, &re) && re.ViewLag {
		e.askMu.Lock()
		e.viewLags[key]++
		lags = e.viewLags[key]
		e.askMu.Unlock()
	} else {
		e.askMu.Lock()
		delete(e.viewLags, key)
		e.askMu.Unlock()
	}
	switch {
	case lags > 0:
		// The co-signer's watcher has not seen the coin yet (its Electrum server lags ours):
		// it refused this request id for good, so ask again soon under a new one (it signed
		// nothing under the old).
		e.retryIn(key, e.viewLagRetry(lags))
		c.RequestID = renewRequestID(c.RequestID, e.now())
		c.State, c.Detail, c.UpdatedAt = CosignerError, re.Text, e.now()
		if err := e.db.RenewProposalCosigner(ctx, string(StateAwaitingCosigners), c); err != nil && !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("renew co-signer request", "proposal", p.ID, "error", err)
		}
		e.log.Info("co-signer has not seen the coins yet; asked again under a new request id", "proposal", p.ID, "cosigner", c.Cosigner, "answer", re.Text)
		return
	case errors.As(err, &re) && !re.Passing:
		// A refusal (policy_denied, unauthorized, unsafe_psbt, …); internal (not synced yet)
		// and rate_limited are passing, asked again below.
		e.denied(ctx, p.ID, c, re.Text)
		return
	case err != nil:
		e.retryIn(key, e.retryAfter)
		c.State, c.Detail, c.UpdatedAt = CosignerError, err.Error(), e.now()
		if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c); err != nil && !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("record co-signer error", "proposal", p.ID, "error", err)
		}
		e.log.Warn("co-signer request failed; asked again later", "proposal", p.ID, "cosigner", c.Cosigner, "error", err)
		return
	}
	if got.UnsignedTx.TxHash() != txid {
		e.denied(ctx, p.ID, c, "invalid_answer: the co-signer returned another transaction")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.db.GetProposal(ctx, p.ID)
	if err != nil || cur.State != string(StateAwaitingCosigners) {
		return // cancelled or finished meanwhile
	}
	base, err := btcpsbt.NewFromRawBytes(bytes.NewReader(cur.PSBT), false)
	if err != nil {
		e.log.Error("stored PSBT", "proposal", p.ID, "error", err)
		return
	}
	combined, err := psbt.Combine(base, got)
	if err != nil {
		e.denied(ctx, p.ID, c, "invalid_answer: "+err.Error())
		return
	}
	var buf bytes.Buffer
	if err := combined.Serialize(&buf); err != nil {
		e.log.Error("serialize PSBT", "proposal", p.ID, "error", err)
		return
	}
	n, _ := psbt.Signatures(e.desc, combined)
	cur.PSBT, cur.UpdatedAt = buf.Bytes(), e.now()
	c.State, c.Detail, c.UpdatedAt = CosignerSigned, fmt.Sprintf("every input now has %d signature(s)", n), e.now()
	events := []store.ProposalEvent{{Event: "answered", Detail: c.Cosigner}}
	// The answer that completes the threshold is stored with the finalized transaction, in one
	// transaction (the runner, woken below, broadcasts it); when finalizing fails here the runner
	// finalizes (and reports) at its next step, as before.
	a, _ := e.automation(cur.Automation)
	if need, err := e.needed(a); err == nil && n >= need {
		if tx, err := e.finalTx(cur.ID, combined); err != nil {
			e.log.Warn("finalize with the co-signer's answer", "proposal", p.ID, "error", err)
		} else {
			cur.State, cur.FinalTx, cur.TxID = string(StateFinalized), tx.raw, tx.id
			events = append(events, store.ProposalEvent{Event: "finalized", Detail: tx.id})
		}
	}
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: string(StateAwaitingCosigners), Proposal: cur, Cosigners: []store.ProposalCosigner{c},
		Events: events}); err != nil {
		e.log.Warn("record co-signer answer", "proposal", p.ID, "error", err)
		return
	}
	e.log.Info("co-signer signed", "proposal", p.ID, "cosigner", c.Cosigner, "signatures", n)
	if cur.State == string(StateFinalized) {
		e.log.Info("proposal finalized", "proposal", p.ID, "automation", cur.Automation, "state", cur.State, "txid", cur.TxID)
	}
}

// renewRequestID is the next request id for a co-signer after a view-lag refusal: the first id
// with a "~<unix nanoseconds>" suffix (replacing an earlier one).
func renewRequestID(id string, now time.Time) string {
	base, _, _ := strings.Cut(id, "~")
	return fmt.Sprintf("%s~%d", base, now.UnixNano())
}

// denied records a co-signer's refusal and abandons the proposal when the co-signers that may
// still sign cannot reach the threshold.
func (e *Engine) denied(ctx context.Context, id string, c store.ProposalCosigner, text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.State, c.Detail, c.UpdatedAt = CosignerDenied, text, e.now()
	if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c, store.ProposalEvent{Event: "denied", Detail: c.Cosigner + ": " + text}); err != nil {
		if !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("record co-signer refusal", "proposal", id, "error", err)
		}
		return
	}
	p, err := e.db.GetProposal(ctx, id)
	if err != nil {
		return
	}
	e.log.Warn("co-signer refused", "proposal", id, "cosigner", c.Cosigner, "reason", text)
	e.tell(ctx, p, NoticeDenied, fmt.Sprintf("proposal %s (%s): co-signer %s refused: %s", id, p.Automation, c.Cosigner[:12], text))
	a, _ := e.automation(p.Automation)
	need, err := e.needed(a)
	if err != nil {
		need = e.desc.Threshold()
	}
	pk, err := btcpsbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
	if err != nil {
		return
	}
	have, _ := psbt.Signatures(e.desc, pk)
	cos, err := e.db.ProposalCosigners(ctx, id)
	if err != nil {
		return
	}
	possible := have
	for _, x := range cos {
		if x.State != CosignerDenied && x.State != CosignerSigned {
			possible++
		}
	}
	if possible < need {
		if err := e.abandon(ctx, p, text); err != nil {
			e.log.Warn("abandon", "proposal", id, "error", err)
		}
	}
}
