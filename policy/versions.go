package policy

import (
	"slices"
	"time"
)

// Version is a policy file content the daemon has seen, with the time from which it applies
// alone (earlier, the policies before it stay in force too and the stricter decision wins).
// It is plain data: policy/policyfile records versions in a store and rebuilds the policy in
// force from them (Parse, WithPrior).
type Version struct {
	Hash, Name  string
	Body        []byte
	SeenAt      time.Time
	EffectiveAt time.Time
}

// LoosenedBy compares next with every policy in force at now (p, then its priors still
// pending; see WithPrior). It returns the loosenings next makes against any of them (Loosenings'
// texts, sorted, without repeats) and how long next must wait before it applies alone: the
// longest loosen_delay among the policies it loosens. Both are empty when next only tightens
// (or keeps) every policy in force; next then applies at once.
func (p *Policy) LoosenedBy(next *Policy, now time.Time) (loosenings []string, delay time.Duration) {
	for _, s := range p.stages(now) {
		if l := Loosenings(s, next); len(l) > 0 {
			loosenings = append(loosenings, l...)
			delay = max(delay, s.LoosenDelay)
		}
	}
	slices.Sort(loosenings)
	return slices.Compact(loosenings), delay
}
