package chainwatch

import (
	"bytes"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

// failingScripts is fakeScripts that fails at one index of branch 0 (and counts nothing else).
type failingScripts struct {
	fakeScripts
	failAt uint32
}

var errDeriveTest = errors.New("derive failed")

func (f failingScripts) PkScript(branch, index uint32) ([]byte, error) {
	if branch == 0 && index == f.failAt {
		return nil, errDeriveTest
	}
	return f.fakeScripts.PkScript(branch, index)
}

// batchScripts is failingScripts with a PkScripts that stops at the failing index.
type batchScripts struct {
	failingScripts
	batches *atomic.Int64
}

func (b batchScripts) PkScripts(branch, from uint32, n int) ([][]byte, error) {
	b.batches.Add(1)
	var out [][]byte
	for i := range uint32(n) {
		pk, err := b.PkScript(branch, from+i)
		if err != nil {
			return out, err
		}
		out = append(out, pk)
	}
	return out, nil
}

// TestDeriveRangeOrder: a long range derived in parallel is the same, script by script, as
// deriving each index in turn; a failure returns exactly the scripts below the failing index.
func TestDeriveRangeOrder(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-by-one", true: "batches"}[batch], func(t *testing.T) { testDeriveRange(t, batch) })
	}
}

func testDeriveRange(t *testing.T, batch bool) {
	var batches atomic.Int64
	source := func(failAt uint32) ScriptSource {
		f := failingScripts{fakeScripts{branches: 2}, failAt}
		if batch {
			return batchScripts{f, &batches}
		}
		return f
	}
	src := source(1 << 30)
	tr, err := NewTracker(src, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, deriveSerialBelow - 1, deriveSerialBelow + 1, 1000, 1003} {
		got, err := tr.deriveRange(1, 7, n)
		if err != nil || len(got) != n {
			t.Fatalf("n=%d: %d scripts, %v", n, len(got), err)
		}
		for i, s := range got {
			want, _ := src.PkScript(1, 7+uint32(i))
			if s.Branch != 1 || s.Index != 7+uint32(i) || !bytes.Equal(s.PkScript, want) || s.ScriptHash != ScriptHash(want) {
				t.Fatalf("n=%d: script %d is %d/%d %x", n, i, s.Branch, s.Index, s.PkScript)
			}
		}
	}
	for _, failAt := range []uint32{0, 5, 250, 999} {
		tr.src = source(failAt)
		got, err := tr.deriveRange(0, 0, 1000)
		if !errors.Is(err, errDeriveTest) || len(got) != int(failAt) {
			t.Fatalf("failing at %d: %d scripts, %v", failAt, len(got), err)
		}
		for i, s := range got {
			if s.Index != uint32(i) {
				t.Fatalf("failing at %d: script %d has index %d", failAt, i, s.Index)
			}
		}
	}
	if batch && batches.Load() == 0 {
		t.Fatal("the batch source was never asked")
	}
}

// TestAddAhead: scripts derived outside the tracker (DeriveAhead) and handed to it (AddAhead)
// are what Peek and Extend would have derived; a run that does not continue the peeked scripts
// is not taken.
func TestAddAhead(t *testing.T) {
	newTr := func() *Tracker {
		tr, err := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 10))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Extend(); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tr, ref := newTr(), newTr()
	if _, err := tr.Peek(0, 10); err != nil {
		t.Fatal(err)
	}
	end := tr.AheadEnd(0)
	if end != 30 {
		t.Fatalf("AheadEnd = %d, want 20 tracked + 10 peeked", end)
	}
	more, err := tr.DeriveAhead(0, end, 50)
	if err != nil {
		t.Fatal(err)
	}
	if tr.AddAhead(more[1:]) || tr.AddAhead(append([]ScriptState{more[0]}, more[2:]...)) || tr.AddAhead(nil) {
		t.Fatal("AddAhead took a run that does not continue the peeked scripts")
	}
	if !tr.AddAhead(more) || tr.AheadEnd(0) != end+50 {
		t.Fatalf("AddAhead did not take the next run (AheadEnd %d)", tr.AheadEnd(0))
	}
	got, err := tr.Peek(0, 60)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Peek(0, 60)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("Peek after AddAhead differs from Peek deriving them")
	}
}
