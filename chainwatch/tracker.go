package chainwatch

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// ScriptState is one tracked script. Status is the last Electrum status verified against a
// fetched history ("" = null, no history); Verified is false until the first verification.
type ScriptState struct {
	Branch     uint32
	Index      uint32
	PkScript   []byte
	ScriptHash string
	Status     string
	Verified   bool
}

// Used reports whether the script has a (verified) history.
func (s ScriptState) Used() bool { return s.Verified && s.Status != "" }

// Update is what one Tracker.Apply changed: the script's new state, the UTXOs put (new or with a
// new height) and removed, and the events to publish, in order.
type Update struct {
	Script ScriptState
	Put    []UTXO
	Remove []wire.OutPoint
	Events []Event
}

// Tracker is chainwatch's functional core: the tracked scripts and their lookahead window per
// branch, the UTXO set and the tip. It does no I/O (deriving scripts through ScriptSource is
// computation) and is not safe for concurrent use; the Watcher guards it.
type Tracker struct {
	src       ScriptSource
	lookahead int
	branches  [][]*ScriptState // [branch][index]
	used      []int64          // highest used index per branch, -1 for none
	byHash    map[string]*ScriptState
	byPk      map[string]*ScriptState
	utxos     map[wire.OutPoint]UTXO
	tip       Tip
	hasTip    bool
}

// NewTracker returns an empty tracker for src with lookahead unused scripts after the highest
// used index of each branch (Electrum's gap limit). It returns ErrConfig if src has no branches
// or lookahead < 1.
func NewTracker(src ScriptSource, lookahead int) (*Tracker, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: no ScriptSource", ErrConfig)
	}
	n := src.Branches()
	if n < 1 {
		return nil, fmt.Errorf("%w: ScriptSource has %d branches", ErrConfig, n)
	}
	if lookahead < 1 {
		return nil, fmt.Errorf("%w: lookahead %d < 1", ErrConfig, lookahead)
	}
	t := &Tracker{
		src:       src,
		lookahead: lookahead,
		branches:  make([][]*ScriptState, n),
		used:      make([]int64, n),
		byHash:    make(map[string]*ScriptState),
		byPk:      make(map[string]*ScriptState),
		utxos:     make(map[wire.OutPoint]UTXO),
	}
	for i := range t.used {
		t.used[i] = -1
	}
	return t, nil
}

func (t *Tracker) derive(branch, index uint32) (*ScriptState, error) {
	pk, err := t.src.PkScript(branch, index)
	if err != nil {
		return nil, fmt.Errorf("chainwatch: derive script %d/%d: %w", branch, index, err)
	}
	return &ScriptState{Branch: branch, Index: index, PkScript: pk, ScriptHash: ScriptHash(pk)}, nil
}

func (t *Tracker) add(s *ScriptState) {
	t.branches[s.Branch] = append(t.branches[s.Branch], s)
	t.byHash[s.ScriptHash] = s
	t.byPk[string(s.PkScript)] = s
	if s.Used() && int64(s.Index) > t.used[s.Branch] {
		t.used[s.Branch] = int64(s.Index)
	}
}

// Restore loads persisted state into an empty tracker. Every stored script is re-derived and
// must match (else ErrWalletMismatch); stored scripts must be contiguous from index 0 per
// branch; UTXOs must belong to stored scripts. Call Extend afterwards.
func (t *Tracker) Restore(scripts []ScriptState, utxos []UTXO, tip *Tip) error {
	sorted := append([]ScriptState(nil), scripts...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Branch != sorted[j].Branch {
			return sorted[i].Branch < sorted[j].Branch
		}
		return sorted[i].Index < sorted[j].Index
	})
	for _, s := range sorted {
		if int(s.Branch) >= len(t.branches) {
			return fmt.Errorf("%w: stored script on branch %d, wallet has %d branches", ErrWalletMismatch, s.Branch, len(t.branches))
		}
		if int(s.Index) != len(t.branches[s.Branch]) {
			return fmt.Errorf("%w: stored scripts of branch %d are not contiguous at index %d", ErrWalletMismatch, s.Branch, s.Index)
		}
		d, err := t.derive(s.Branch, s.Index)
		if err != nil {
			return err
		}
		if !bytes.Equal(d.PkScript, s.PkScript) || d.ScriptHash != s.ScriptHash {
			return fmt.Errorf("%w: stored script %d/%d differs from the derived one", ErrWalletMismatch, s.Branch, s.Index)
		}
		d.Status, d.Verified = s.Status, s.Verified
		t.add(d)
	}
	for _, u := range utxos {
		s, ok := t.byPk[string(u.PkScript)]
		if !ok || s.Branch != u.Branch || s.Index != u.Index {
			return fmt.Errorf("%w: stored UTXO %v pays no stored script", ErrWalletMismatch, u.OutPoint)
		}
		t.utxos[u.OutPoint] = u
	}
	if tip != nil {
		t.tip, t.hasTip = *tip, true
	}
	return nil
}

// Extend derives scripts until every branch has Lookahead scripts after its highest used index
// (indices 0..highestUsed+Lookahead) and returns the new ones, unverified, for the caller to
// subscribe. It returns nil when the window is full.
func (t *Tracker) Extend() ([]ScriptState, error) {
	var out []ScriptState
	for b := range t.branches {
		want := t.used[b] + 1 + int64(t.lookahead)
		for int64(len(t.branches[b])) < want {
			s, err := t.derive(uint32(b), uint32(len(t.branches[b])))
			if err != nil {
				return out, err
			}
			t.add(s)
			out = append(out, *s)
		}
	}
	return out, nil
}

// Scripts returns every tracked script, by branch then index.
func (t *Tracker) Scripts() []ScriptState {
	var out []ScriptState
	for _, br := range t.branches {
		for _, s := range br {
			out = append(out, *s)
		}
	}
	return out
}

// Script returns the tracked script with this scripthash.
func (t *Tracker) Script(scriptHash string) (ScriptState, bool) {
	s, ok := t.byHash[scriptHash]
	if !ok {
		return ScriptState{}, false
	}
	return *s, true
}

// UpToDate reports whether the script's verified status already equals announced, so that a
// fetch can be skipped (announced "" is the protocol's null).
func (t *Tracker) UpToDate(scriptHash, announced string) bool {
	s, ok := t.byHash[scriptHash]
	return ok && s.Verified && s.Status == announced
}

// Apply verifies a fetched history and unspent list of one script against the status the
// server announced and, if they agree, replaces the script's UTXOs with the unspent list.
// Errors (nothing changes): ErrUnknownScript; ErrBadHistory for an inconsistent answer;
// ErrStatusMismatch when the history does not hash to announced (a newer status is probably on
// its way: wait for it or refetch).
//
// Events, in order: FundingSeen for each new UTXO (followed by FundingConfirmed if it is already
// confirmed); FundingConfirmed for a UTXO that moved from the mempool into a block; Spent for a
// UTXO gone while its funding tx is still in the history; FundingDropped for one whose funding tx
// left the history. A height change between blocks or back to the mempool (a reorg) updates the
// UTXO without an event for now.
func (t *Tracker) Apply(scriptHash, announced string, history []HistoryItem, unspent []UnspentItem) (Update, error) {
	s, ok := t.byHash[scriptHash]
	if !ok {
		return Update{}, fmt.Errorf("%w: %s", ErrUnknownScript, scriptHash)
	}
	status, err := ElectrumStatus(history)
	if err != nil {
		return Update{}, err
	}
	if status != announced {
		return Update{}, fmt.Errorf("%w: script %d/%d: announced %q, history hashes to %q", ErrStatusMismatch, s.Branch, s.Index, announced, status)
	}
	inHistory := make(map[chainhash.Hash]int32, len(history))
	for _, h := range history {
		inHistory[h.TxHash] = h.Height
	}
	next := make(map[wire.OutPoint]UTXO, len(unspent))
	for _, it := range unspent {
		if _, ok := inHistory[it.TxHash]; !ok {
			return Update{}, fmt.Errorf("%w: script %d/%d: unspent output of %s not in its history", ErrBadHistory, s.Branch, s.Index, it.TxHash)
		}
		if it.Value < 0 {
			return Update{}, fmt.Errorf("%w: script %d/%d: negative value", ErrBadHistory, s.Branch, s.Index)
		}
		op := wire.OutPoint{Hash: it.TxHash, Index: it.TxPos}
		if _, dup := next[op]; dup {
			return Update{}, fmt.Errorf("%w: script %d/%d: %v listed twice", ErrBadHistory, s.Branch, s.Index, op)
		}
		h := it.Height
		if h < 0 {
			h = 0
		}
		next[op] = UTXO{OutPoint: op, Value: it.Value, PkScript: s.PkScript, Branch: s.Branch, Index: s.Index, Height: h}
	}

	var up Update
	// Removed first, in a stable order.
	var old []UTXO
	for op, u := range t.utxos {
		if u.Branch == s.Branch && u.Index == s.Index {
			if _, still := next[op]; !still {
				old = append(old, u)
			}
		}
	}
	sortUTXOs(old)
	for _, u := range old {
		up.Remove = append(up.Remove, u.OutPoint)
		delete(t.utxos, u.OutPoint)
		if _, ok := inHistory[u.OutPoint.Hash]; ok {
			up.Events = append(up.Events, Spent{OutPoint: u.OutPoint, UTXO: u})
		} else {
			up.Events = append(up.Events, FundingDropped{UTXO: u})
		}
	}
	added := make([]UTXO, 0, len(next))
	for _, u := range next {
		added = append(added, u)
	}
	sortUTXOs(added)
	for _, u := range added {
		prev, had := t.utxos[u.OutPoint]
		switch {
		case !had:
			up.Events = append(up.Events, FundingSeen{UTXO: u})
			if u.Height > 0 {
				up.Events = append(up.Events, FundingConfirmed{UTXO: u, Confs: t.confs(u)})
			}
		case prev.Height == u.Height && prev.Value == u.Value:
			continue
		case prev.Height == 0 && u.Height > 0:
			up.Events = append(up.Events, FundingConfirmed{UTXO: u, Confs: t.confs(u)})
		}
		t.utxos[u.OutPoint] = u
		up.Put = append(up.Put, u)
	}

	s.Status, s.Verified = status, true
	if s.Used() && int64(s.Index) > t.used[s.Branch] {
		t.used[s.Branch] = int64(s.Index)
	}
	up.Script = *s
	return up, nil
}

func (t *Tracker) confs(u UTXO) int32 {
	if c := u.Confirmations(t.tip); c > 0 {
		return c
	}
	return 1
}

// SetTip records a new best header and returns a NewTip event, or nil if tip is the current one.
func (t *Tracker) SetTip(tip Tip) []Event {
	if t.hasTip && t.tip == tip {
		return nil
	}
	t.tip, t.hasTip = tip, true
	return []Event{NewTip{Tip: tip}}
}

// Tip returns the current tip and whether one has been set.
func (t *Tracker) Tip() (Tip, bool) { return t.tip, t.hasTip }

// UTXO returns the UTXO at op, if the wallet has it.
func (t *Tracker) UTXO(op wire.OutPoint) (UTXO, bool) {
	u, ok := t.utxos[op]
	u.PkScript = bytes.Clone(u.PkScript)
	return u, ok
}

// UTXOs returns the UTXO set ordered by height (mempool last), txid, output index.
func (t *Tracker) UTXOs() []UTXO {
	out := make([]UTXO, 0, len(t.utxos))
	for _, u := range t.utxos {
		u.PkScript = bytes.Clone(u.PkScript) // callers may not alias the tracker's state
		out = append(out, u)
	}
	sortUTXOs(out)
	return out
}

// Lookup reports whether pkScript is a tracked script and where it derives from.
func (t *Tracker) Lookup(pkScript []byte) (branch, index uint32, ok bool) {
	s, ok := t.byPk[string(pkScript)]
	if !ok {
		return 0, 0, false
	}
	return s.Branch, s.Index, true
}

// Len returns the number of tracked scripts.
func (t *Tracker) Len() int { return len(t.byHash) }

func sortUTXOs(us []UTXO) {
	sort.Slice(us, func(i, j int) bool {
		a, b := us[i], us[j]
		am, bm := a.Height <= 0, b.Height <= 0
		if am != bm {
			return !am
		}
		if a.Height != b.Height {
			return a.Height < b.Height
		}
		if c := bytes.Compare(a.OutPoint.Hash[:], b.OutPoint.Hash[:]); c != 0 {
			return c < 0
		}
		return a.OutPoint.Index < b.OutPoint.Index
	})
}
