package psbtflow

import (
	"context"
	"fmt"
	"time"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/store"
)

// holdKey names a held request.
type holdKey struct{ client, id string }

// holdDue is when a waiting hold must be decided again: at At when timed, else only when an
// approval arrives or the policy changes.
type holdDue struct {
	At    time.Time
	timed bool
}

// holdSchedule keeps, in memory, when each waiting hold must be decided again, so that a Run
// tick over held requests costs nothing until a time point passes (the end of a cooling-off, a
// time-of-day window's edge, a loosened policy taking effect: policy.NextChange) or an approval
// arrives (issue 11, finding 4). It is rebuilt from the store at the first tick after a start
// and whenever the policy in force changes. Guarded by Service.mu (held only to read or change
// it, never across a decision).
type holdSchedule struct {
	loaded bool
	pol    *policy.Policy // the policy the due times were computed under
	due    map[holdKey]holdDue
}

// scheduleHold records when the hold of key, just decided and still held, is due again: at,
// the first instant at which the policy's decision could change with time alone
// (policy.NextChange: the end of a cooling-off, a time-of-day window opening or closing, a
// loosened policy applying alone), or, when at is zero, only when an approval arrives or the
// policy changes. Called with s.mu held.
func (s *Service) scheduleHold(key holdKey, at time.Time) {
	if s.holds.due == nil {
		s.holds.due = map[holdKey]holdDue{}
	}
	s.holds.due[key] = holdDue{At: at, timed: !at.IsZero()}
}

// processHolds decides again the waiting holds that are due (and every one after a start or a
// policy change), ending those that the policy now signs or refuses or that an approver denied
// or cancelled. wake are holds to decide now (an approval arrived). The late answers go out
// through respondEnded.
func (s *Service) processHolds(ctx context.Context, wake ...holdKey) error {
	s.holdRun.Lock()
	defer s.holdRun.Unlock()
	pol := s.policy()
	now := s.now()
	var holds []store.Hold
	s.mu.Lock()
	reload := !s.holds.loaded || s.holds.pol != pol
	var due []holdKey
	if reload {
		// Reset before reading the store: a hold written meanwhile is either read below or
		// scheduled into the new map by its decision.
		s.holds = holdSchedule{loaded: true, pol: pol, due: map[holdKey]holdDue{}}
	} else {
		for _, k := range wake {
			s.holds.due[k] = holdDue{timed: true}
		}
		for k, d := range s.holds.due {
			if d.timed && !now.Before(d.At) {
				due = append(due, k)
			}
		}
	}
	s.mu.Unlock()
	if reload {
		all, err := s.db.Holds(ctx, store.HoldWaiting)
		if err != nil {
			s.forgetSchedule()
			return err
		}
		holds = all
	}
	for _, k := range due {
		h, err := s.db.FindHold(ctx, k.client, k.id)
		if err != nil {
			return fmt.Errorf("held request %s/%s: %w", k.client, k.id, err)
		}
		if h.State != store.HoldWaiting {
			s.unscheduleHold(k)
			continue
		}
		holds = append(holds, h)
	}
	for _, h := range holds {
		if err := s.decideHold(ctx, h, pol, now); err != nil {
			// Decided again at the next tick.
			s.forgetSchedule()
			return err
		}
	}
	return nil
}

// forgetSchedule makes the next processHolds decide every waiting hold again.
func (s *Service) forgetSchedule() {
	s.mu.Lock()
	s.holds.loaded = false
	s.mu.Unlock()
}

// unscheduleHold forgets the hold of key (it ended).
func (s *Service) unscheduleHold(key holdKey) {
	s.mu.Lock()
	delete(s.holds.due, key)
	s.mu.Unlock()
}

// decideHold decides one waiting hold again, under its request's lock (a repeat of the request
// meanwhile waits and is answered from the store).
func (s *Service) decideHold(ctx context.Context, h store.Hold, pol *policy.Policy, now time.Time) error {
	key := holdKey{h.Client, h.RequestID}
	defer s.requests.lock(key)()
	if cur, err := s.db.FindHold(ctx, h.Client, h.RequestID); err != nil {
		return fmt.Errorf("held request %s/%s: %w", h.Client, h.RequestID, err)
	} else if cur.State != store.HoldWaiting {
		s.unscheduleHold(key)
		return nil
	}
	rec, ok, err := s.db.SignRequestRow(ctx, h.Client, h.RequestID)
	if err != nil || !ok {
		return fmt.Errorf("held request %s/%s: %v", h.Client, h.RequestID, err)
	}
	req := nip46.Call{Client: h.Client, ID: h.RequestID, Method: rec.Method, Params: h.Params}
	approvals, err := s.db.Approvals(ctx, h.Client, h.RequestID)
	if err != nil {
		return err
	}
	var yes []string
	var stop *store.Approval
	for i, a := range approvals {
		if !approvalCounts(pol, a, h.Client, now) {
			continue // from an approver of a policy not yet in force alone
		}
		switch a.Decision {
		case "approve":
			yes = append(yes, a.Approver)
		default:
			if stop == nil {
				stop = &approvals[i]
			}
		}
	}
	if stop != nil {
		who := stop.Approver
		if name, ok := policy.ApproverName(pol, who, now); ok {
			who = name
		} else if who == h.Client {
			who = "the requesting client"
		}
		me := nip46.Errorf(nip46.CodePolicyDenied, "%s: %s by %s", h.Rule, map[string]string{"deny": "denied", "cancel": "cancelled"}[stop.Decision], who)
		v := s.refused(stop.Decision, me, h.Rule, nil)
		v.rec.UnsignedTxID = rec.UnsignedTxID
		state := store.HoldDenied
		if stop.Decision == "cancel" {
			state = store.HoldCancelled
		}
		if _, err := s.finish(ctx, req, rec.PSBTSHA256, v, state); err != nil && !isMethodError(err) {
			return err
		}
		s.unscheduleHold(key)
		return nil
	}
	v := s.decide(ctx, req, pol, now, h.HeldSince, yes)
	if v.held {
		s.mu.Lock()
		s.scheduleHold(key, v.recheck)
		s.mu.Unlock()
		return nil
	}
	state := store.HoldReleased
	if v.rec.State != store.RequestSigned {
		state = store.HoldDenied
	}
	if _, err := s.finish(ctx, req, rec.PSBTSHA256, v, state); err != nil && !isMethodError(err) {
		return err
	}
	s.unscheduleHold(key)
	return nil
}

// approvalCounts reports whether a recorded approve/deny/cancel still counts under pol at now:
// the requesting client's own cancel always does; an approver's decision only while it is an
// approver of every policy in force (one added by a loosened policy that does not apply alone
// yet cannot approve, deny or cancel).
func approvalCounts(pol *policy.Policy, a store.Approval, client string, now time.Time) bool {
	if a.Approver == client && a.Decision == "cancel" {
		return true
	}
	_, ok := policy.ApproverName(pol, a.Approver, now)
	return ok
}
