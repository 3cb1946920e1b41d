package policy

import "time"

// The instants at which a decision can change with nothing but time passing. A held request is
// decided again at the earliest of them (psbtflow's hold schedule), not on every tick.

// hoursHorizon bounds the search for a window's next edge: a weekly pattern of days repeats
// within 7 local days, and a day of a daylight-saving change is at most a few hours longer.
const hoursHorizon = 8 * 24 * time.Hour

// Next returns the first instant after t at which Contains changes value (the window opens or
// closes), and false when it never does (a window on no day). Daylight-saving changes of Zone
// are followed exactly: a window edge that falls in a skipped hour takes effect at the change
// itself (02:30 on a spring-forward night opens the window at 03:00 new time), and an edge in a
// repeated hour takes effect at each of its two occurrences.
func (h *Hours) Next(t time.Time) (time.Time, bool) {
	was := h.Contains(t)
	end := t.Add(hoursHorizon)
	for cur := t; cur.Before(end); {
		lt := cur.In(h.Zone)
		_, off := lt.Zone()
		_, segEnd := lt.ZoneBounds()
		if segEnd.IsZero() || segEnd.After(end) {
			segEnd = end
		}
		// Within [cur, segEnd) the offset is fixed, so the wall clock is UTC + off and Contains
		// can only change where it reads From, To or midnight (the day changes).
		offset := time.Duration(off) * time.Second
		y, m, d := cur.Add(offset).UTC().Date()
		for day := 0; ; day++ {
			midnight := time.Date(y, m, d+day, 0, 0, 0, 0, time.UTC).Add(-offset)
			if !midnight.Before(segEnd) {
				break
			}
			var first time.Time
			for _, c := range []ClockTime{0, h.From, h.To} {
				at := midnight.Add(time.Duration(c) * time.Minute)
				if at.After(t) && !at.Before(cur) && at.Before(segEnd) && h.Contains(at) != was && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			if !first.IsZero() {
				return first, true
			}
		}
		if segEnd.Equal(end) {
			break
		}
		if h.Contains(segEnd) != was {
			return segEnd, true
		}
		cur = segEnd
	}
	return time.Time{}, false
}

// NextChange returns the first instant after in.Now at which Evaluate(p, in) could decide
// otherwise with every fact of in but Now unchanged, and false when no instant can (only a new
// fact — an approval, a ledger change, another policy — can then change the decision). Pure.
//
// The instants considered, in every policy in force at in.Now (see WithPrior): the edges of
// time-of-day windows (limits.hours and each rule's match.hours, in their zones, daylight-saving
// changes included; Hours.Next), the end of each hold rule's cooling-off (counted from
// in.HeldSince, or from in.Now for a new request), and the instants at which a loosened policy
// starts to apply alone (loosen_delay), which also changes who may approve. The set is a
// superset: the decision may stay the same at the instant returned, and the caller asks again.
//
// Velocity windows give no instant: in.Spent is a fact of in, and as time alone passes the spend
// exposure in a window can only fall (a confirmed transaction leaves it), which never changes a
// decision that passed the window. Holds have no timeout.
func NextChange(p *Policy, in Input) (time.Time, bool) {
	now := in.Now
	var next time.Time
	consider := func(at time.Time) {
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	window := func(h *Hours) {
		if h == nil {
			return
		}
		if at, ok := h.Next(now); ok {
			consider(at)
		}
	}
	since := in.HeldSince
	if since.IsZero() {
		since = now
	}
	stages := p.stages(now)
	for i, s := range stages {
		if i+1 < len(stages) {
			consider(s.effectiveAt)
		}
		window(s.Limits.Hours)
		for j := range s.Rules {
			r := &s.Rules[j]
			window(r.hours)
			if r.Action == Hold && r.Hold != nil && r.Hold.CoolingOff > 0 {
				consider(since.Add(r.Hold.CoolingOff))
			}
		}
	}
	return next, !next.IsZero()
}
