package policy

import (
	"fmt"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	z, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func hoursOf(t *testing.T, from, to, zone string, days ...time.Weekday) *Hours {
	t.Helper()
	f, err := ParseClockTime(from)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseClockTime(to)
	if err != nil {
		t.Fatal(err)
	}
	h := &Hours{From: f, To: e, Zone: mustZone(t, zone)}
	if len(days) == 0 {
		for i := range h.Days {
			h.Days[i] = true
		}
	}
	for _, d := range days {
		h.Days[d] = true
	}
	return h
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestHoursNext checks the next edge of a time-of-day window, daylight-saving changes included
// (America/New_York: 2026-03-08 02:00 EST → 03:00 EDT at 07:00Z; 2026-11-01 02:00 EDT → 01:00
// EST at 06:00Z).
func TestHoursNext(t *testing.T) {
	weekdays := []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	for _, c := range []struct {
		name string
		h    *Hours
		at   string
		want string // "" = never
	}{
		{"opens later today", hoursOf(t, "11:00", "17:00", "UTC"), "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"},
		{"closes today", hoursOf(t, "09:00", "17:00", "UTC"), "2026-11-20T10:00:00Z", "2026-11-20T17:00:00Z"},
		{"at the opening: next is the close", hoursOf(t, "09:00", "17:00", "UTC"), "2026-11-20T09:00:00Z", "2026-11-20T17:00:00Z"},
		{"just before the close", hoursOf(t, "09:00", "17:00", "UTC"), "2026-11-20T16:59:59.5Z", "2026-11-20T17:00:00Z"},
		{"after the close: tomorrow", hoursOf(t, "09:00", "17:00", "UTC"), "2026-11-20T18:00:00Z", "2026-11-21T09:00:00Z"},
		{"friday evening: monday morning", hoursOf(t, "09:00", "17:00", "UTC", weekdays...), "2026-11-20T18:00:00Z", "2026-11-23T09:00:00Z"},
		{"in its zone", hoursOf(t, "08:00", "20:00", "Europe/Berlin"), "2026-11-20T05:00:00Z", "2026-11-20T07:00:00Z"},
		{"wraps midnight: opens", hoursOf(t, "22:00", "06:00", "UTC"), "2026-11-20T12:00:00Z", "2026-11-20T22:00:00Z"},
		{"wraps midnight: no change at midnight", hoursOf(t, "22:00", "06:00", "UTC"), "2026-11-20T23:00:00Z", "2026-11-21T06:00:00Z"},
		// Friday's night shift runs into Saturday; Saturday has none.
		{"wraps midnight on weekdays", hoursOf(t, "22:00", "06:00", "UTC", weekdays...), "2026-11-21T07:00:00Z", "2026-11-23T22:00:00Z"},
		{"whole day to midnight", hoursOf(t, "00:00", "23:59", "UTC", time.Saturday), "2026-11-20T10:00:00Z", "2026-11-21T00:00:00Z"},
		{"no day: never", hoursOf(t, "09:00", "17:00", "UTC", []time.Weekday{}...), "2026-11-20T10:00:00Z", ""},
		{"edge in the skipped hour opens at the change", hoursOf(t, "02:30", "05:00", "America/New_York"), "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"},
		{"spring forward: close in new time", hoursOf(t, "01:00", "04:00", "America/New_York"), "2026-03-08T06:30:00Z", "2026-03-08T08:00:00Z"},
		{"fall back: first 01:30 opens", hoursOf(t, "01:30", "04:00", "America/New_York"), "2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z"},
		{"fall back: the repeated hour closes it", hoursOf(t, "01:30", "04:00", "America/New_York"), "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z"},
		{"fall back: second 01:30 opens again", hoursOf(t, "01:30", "04:00", "America/New_York"), "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z"},
		{"fall back: close in new time", hoursOf(t, "01:30", "04:00", "America/New_York"), "2026-11-01T06:30:00Z", "2026-11-01T09:00:00Z"},
		{"half-hour zone", hoursOf(t, "09:00", "17:00", "Asia/Kolkata"), "2026-11-20T00:00:00Z", "2026-11-20T03:30:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "no day: never" {
				c.h.Days = [7]bool{}
			}
			got, ok := c.h.Next(utc(c.at))
			if c.want == "" {
				if ok {
					t.Fatalf("Next(%s) = %s, want never", c.at, got)
				}
				return
			}
			if !ok || !got.Equal(utc(c.want)) {
				t.Fatalf("Next(%s) = %s %v, want %s", c.at, got.UTC().Format(time.RFC3339), ok, c.want)
			}
			if c.h.Contains(got) == c.h.Contains(utc(c.at)) {
				t.Fatalf("Contains does not change at %s", got)
			}
		})
	}
}

// TestHoursNextAgainstScan compares Next with a scan in steps of 15 minutes (every zone offset
// and window edge here is a multiple of 15 minutes, so Contains changes only at such instants),
// across daylight-saving changes of zones with 1 h and 30 min (Lord Howe) changes, and 30 min
// (Kolkata) and 45 min (Chatham) offsets.
func TestHoursNextAgainstScan(t *testing.T) {
	zones := []string{"UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "America/Santiago"}
	windows := [][2]string{{"02:30", "05:00"}, {"01:30", "04:00"}, {"22:00", "02:15"}, {"00:00", "12:00"}, {"09:00", "17:00"}, {"23:30", "00:30"}}
	days := [][]time.Weekday{nil, {time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}, {time.Sunday}}
	// Just before the daylight-saving changes of 2026: US spring, EU spring, southern autumn
	// (Santiago, Lord Howe, Chatham), southern spring, EU autumn, US autumn.
	starts := []string{"2026-03-07T20:00:00Z", "2026-03-28T22:10:30Z", "2026-04-04T12:00:00Z", "2026-09-26T11:59:00Z", "2026-10-24T23:00:00Z", "2026-10-31T22:45:00Z"}
	for _, zn := range zones {
		for _, w := range windows {
			for _, ds := range days {
				h := hoursOf(t, w[0], w[1], zn, ds...)
				for _, s := range starts {
					at := utc(s)
					for range 6 {
						got, ok := h.Next(at)
						want, wok := scanNext(h, at)
						if ok != wok || !got.Equal(want) {
							t.Fatalf("%s %s–%s days %v: Next(%s) = %s %v, scan says %s %v", zn, w[0], w[1], ds, at.Format(time.RFC3339), got.UTC().Format(time.RFC3339), ok, want.UTC().Format(time.RFC3339), wok)
						}
						if !ok {
							break
						}
						at = got
					}
				}
			}
		}
	}
}

func scanNext(h *Hours, t time.Time) (time.Time, bool) {
	was := h.Contains(t)
	const step = 15 * time.Minute
	for u := t.Truncate(step).Add(step); u.Before(t.Add(hoursHorizon)); u = u.Add(step) {
		if h.Contains(u) != was {
			return u, true
		}
	}
	return time.Time{}, false
}

func TestNextChange(t *testing.T) {
	head := fmt.Sprintf("version: 1\nclients:\n  - {name: c, pubkey: %s}\napprovers:\n  - {name: alice, pubkey: %s}\n", pkA, pkA)
	parse := func(t *testing.T, body string) *Policy {
		t.Helper()
		p, err := Parse("p.yaml", []byte(head+body))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := utc("2026-11-20T10:00:00Z") // a Friday
	office := parse(t, "limits: {max_per_tx: 1 BTC}\nrules:\n"+
		"  - {name: office, match: {hours: {from: \"11:00\", to: \"17:00\"}}, action: allow}\n"+
		"  - {name: after_hours, action: hold, hold: {approvals: 1, approvers: [alice]}}\n")
	cooling := parse(t, "limits: {max_per_tx: 1 BTC}\nrules:\n  - {name: wait, action: hold, hold: {cooling_off: 24h}}\n")
	limitHours := parse(t, "timezone: America/New_York\nlimits: {max_per_tx: 1 BTC, hours: {from: \"08:00\", to: \"20:00\"}}\n")
	plain := parse(t, "limits: {max_per_tx: 1 BTC}\nrules:\n  - {name: hold, action: hold, hold: {approvals: 1, approvers: [alice]}}\n")
	loosened := parse(t, "limits: {max_per_tx: 2 BTC}\nrules:\n  - {name: hold, action: hold, hold: {approvals: 1, approvers: [alice]}}\n").
		WithPrior(plain, now.Add(7*24*time.Hour))
	stagesHours := plain.WithPrior(office, now.Add(7*24*time.Hour))
	for _, c := range []struct {
		name      string
		p         *Policy
		heldSince time.Time
		want      string // "" = none
	}{
		{"a rule's window opens", office, time.Time{}, "2026-11-20T11:00:00Z"},
		{"cooling-off of a new request", cooling, time.Time{}, "2026-11-21T10:00:00Z"},
		{"cooling-off counted from the hold", cooling, now.Add(-23 * time.Hour), "2026-11-20T11:00:00Z"},
		{"cooling-off over: nothing", cooling, now.Add(-25 * time.Hour), ""},
		{"limits.hours in the policy's zone", limitHours, time.Time{}, "2026-11-20T13:00:00Z"},
		{"only approvals: nothing", plain, time.Time{}, ""},
		{"a loosened policy applies alone", loosened, time.Time{}, "2026-11-27T10:00:00Z"},
		{"a window of a prior still in force", stagesHours, time.Time{}, "2026-11-20T11:00:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := NextChange(c.p, Input{Client: pkA, Method: "sign_psbt", Now: now, HeldSince: c.heldSince})
			if c.want == "" {
				if ok {
					t.Fatalf("NextChange = %s, want none", got)
				}
				return
			}
			if !ok || !got.Equal(utc(c.want)) {
				t.Fatalf("NextChange = %s %v, want %s", got.UTC().Format(time.RFC3339), ok, c.want)
			}
		})
	}
	// The instant returned is one at which the decision changes: held after hours, allowed when
	// the office rule's window opens.
	in := Input{Client: pkA, Method: "sign_psbt", Now: now}
	if d := Evaluate(office, in); d.Outcome != Hold {
		t.Fatalf("at 10:00: %s %s", d.Outcome, d.Reason)
	}
	at, _ := NextChange(office, in)
	in.Now, in.HeldSince = at, now
	if d := Evaluate(office, in); d.Outcome != Allow {
		t.Fatalf("at %s: %s %s", at, d.Outcome, d.Reason)
	}
}
