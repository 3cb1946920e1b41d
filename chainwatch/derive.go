package chainwatch

import (
	"runtime"
	"sync"
)

// deriveWorkers bounds the goroutines deriveRange uses; deriveSerialBelow is the count under
// which it derives on the calling goroutine (a payment's few new scripts).
const (
	deriveWorkers     = 4
	deriveSerialBelow = 32
)

// batchSource is a ScriptSource that derives a range of scripts at once, cheaper than one at a
// time (*descriptor.Descriptor: PkScripts); it must give the scripts PkScript gives.
type batchSource interface {
	PkScripts(branch, from uint32, n int) ([][]byte, error)
}

// deriveRange derives the n scripts of branch at indexes from..from+n-1 and returns them in
// index order, with their scripthashes. Deriving is most of the CPU of a large wallet's sync
// (three EC multiplications per script of a 2-of-3), so a long range is split into contiguous
// parts derived at once by up to min(GOMAXPROCS, deriveWorkers) goroutines, each started and
// waited for here, each deriving its part in one batch when the source is a batchSource; the
// result does not depend on how the work was split. ScriptSource must be
// safe for concurrent use (a *descriptor.Descriptor is). On an error it returns the scripts
// below the first index that failed, and that error.
func (t *Tracker) deriveRange(branch, from uint32, n int) ([]ScriptState, error) {
	if n <= 0 {
		return nil, nil
	}
	out := make([]ScriptState, n)
	errs := make([]error, n)
	// part derives indexes lo..hi-1 (a batch at once when the source can), stopping at the
	// first error, which it records at its index.
	part := func(lo, hi int) {
		if bs, ok := t.src.(batchSource); ok && hi-lo > 1 {
			pks, err := bs.PkScripts(branch, from+uint32(lo), hi-lo)
			pks = pks[:min(len(pks), hi-lo)]
			for i, pk := range pks {
				out[lo+i] = ScriptState{Branch: branch, Index: from + uint32(lo+i), PkScript: pk, ScriptHash: ScriptHash(pk)}
			}
			if err == nil && len(pks) == hi-lo {
				return
			}
			lo += len(pks) // derived alone below, for the error at its index
		}
		for i := lo; i < hi; i++ {
			s, err := t.derive(branch, from+uint32(i))
			if err != nil {
				errs[i] = err
				return
			}
			out[i] = *s
		}
	}
	workers := min(runtime.GOMAXPROCS(0), deriveWorkers, (n+deriveSerialBelow-1)/deriveSerialBelow)
	if workers <= 1 {
		part(0, n)
	} else {
		var wg sync.WaitGroup
		per := (n + workers - 1) / workers
		for w := range workers {
			lo, hi := w*per, min((w+1)*per, n)
			if lo >= hi {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				part(lo, hi)
			}()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return out[:i], err
		}
	}
	return out, nil
}

// AheadEnd returns the index just past the scripts of branch the tracker has derived, tracked
// or peeked (where the next Peek derives from).
func (t *Tracker) AheadEnd(branch uint32) uint32 {
	if int(branch) >= len(t.branches) {
		return 0
	}
	return uint32(len(t.branches[branch]) + len(t.ahead[branch]))
}

// DeriveAhead derives the n scripts of branch from index from, changing nothing: it reads only
// the ScriptSource, so it may run without the tracker's guard, at the same time as other
// calls (the watcher derives the next range while the server answers). AddAhead hands the
// result to the tracker.
func (t *Tracker) DeriveAhead(branch, from uint32, n int) ([]ScriptState, error) {
	return t.deriveRange(branch, from, n)
}

// AddAhead appends scripts (from DeriveAhead) to the peeked scripts of their branch when they
// continue them (the first one's index is AheadEnd); otherwise, or when they are not a
// contiguous run of one branch, it takes none and returns false. Peek and Extend then take
// them without deriving them again; they stay outside the window until Extend takes them in.
func (t *Tracker) AddAhead(scripts []ScriptState) bool {
	if len(scripts) == 0 {
		return false
	}
	b := scripts[0].Branch
	if int(b) >= len(t.branches) || scripts[0].Index != t.AheadEnd(b) {
		return false
	}
	for i, sc := range scripts {
		if sc.Branch != b || sc.Index != scripts[0].Index+uint32(i) {
			return false
		}
	}
	t.ahead[b] = append(t.ahead[b], scripts...)
	return true
}
