package chainwatch

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/btcsuite/btcd/btcutil"
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

// Update is what one Tracker call changed, for the caller to persist in one transaction and then
// publish: scripts whose state changed, UTXOs put (new, or with a new height or block) and
// removed, transaction states put and removed (a removed one's raw transaction with it), raw
// transactions newly held, each changed script's new history (its txids),
// headers connected (HeadersFrom is the height of Headers[0]; stored headers at and above it are
// replaced), and the events, in order.
type Update struct {
	Scripts     []ScriptState
	Put         []UTXO
	Remove      []wire.OutPoint
	PutTxs      []TxState
	RemoveTxs   []chainhash.Hash
	RawTxs      []*wire.MsgTx // wallet transactions the tracker holds from now on (ApplyTxs)
	Histories   map[string][]chainhash.Hash
	HeadersFrom int32
	Headers     []wire.BlockHeader
	Events      []Event
}

// Empty reports whether u changes nothing.
func (u Update) Empty() bool {
	return len(u.Scripts) == 0 && len(u.Put) == 0 && len(u.Remove) == 0 && len(u.PutTxs) == 0 &&
		len(u.RemoveTxs) == 0 && len(u.RawTxs) == 0 && len(u.Histories) == 0 && len(u.Headers) == 0 && len(u.Events) == 0
}

// Merge appends o to u (o happened after u). The store applies an update's removals before its
// puts, so an output or transaction that u puts and o removes is taken out of u's puts (and a
// removed transaction's raw transaction with it): the merged update then stores what applying u
// and then o would.
func (u *Update) Merge(o Update) {
	if len(o.Remove) > 0 && len(u.Put) > 0 {
		gone := make(map[wire.OutPoint]struct{}, len(o.Remove))
		for _, op := range o.Remove {
			gone[op] = struct{}{}
		}
		u.Put = slices.DeleteFunc(u.Put, func(x UTXO) bool { _, g := gone[x.OutPoint]; return g })
	}
	if len(o.RemoveTxs) > 0 && (len(u.PutTxs) > 0 || len(u.RawTxs) > 0) {
		gone := make(map[chainhash.Hash]struct{}, len(o.RemoveTxs))
		for _, id := range o.RemoveTxs {
			gone[id] = struct{}{}
		}
		u.PutTxs = slices.DeleteFunc(u.PutTxs, func(x TxState) bool { _, g := gone[x.TxID]; return g })
		u.RawTxs = slices.DeleteFunc(u.RawTxs, func(tx *wire.MsgTx) bool { _, g := gone[tx.TxHash()]; return g })
	}
	u.Scripts = append(u.Scripts, o.Scripts...)
	u.Remove = append(u.Remove, o.Remove...)
	u.Put = append(u.Put, o.Put...)
	u.RemoveTxs = append(u.RemoveTxs, o.RemoveTxs...)
	u.PutTxs = append(u.PutTxs, o.PutTxs...)
	u.RawTxs = append(u.RawTxs, o.RawTxs...)
	for sh, h := range o.Histories {
		if u.Histories == nil {
			u.Histories = map[string][]chainhash.Hash{}
		}
		u.Histories[sh] = h
	}
	if len(o.Headers) > 0 {
		if len(u.Headers) > 0 && o.HeadersFrom <= u.HeadersFrom+int32(len(u.Headers)) && o.HeadersFrom >= u.HeadersFrom {
			u.Headers = append(u.Headers[:o.HeadersFrom-u.HeadersFrom], o.Headers...)
		} else {
			u.HeadersFrom, u.Headers = o.HeadersFrom, append([]wire.BlockHeader(nil), o.Headers...)
		}
	}
	u.Events = append(u.Events, o.Events...)
}

// txRecord is a TxState plus how many tracked scripts' histories list it (a count, not the set:
// each script's history lists a transaction once, and a set per transaction would cost a large
// wallet a map per transaction).
type txRecord struct {
	TxState
	refs int
}

// Tracker is chainwatch's functional core, in the manner of lnd's TxNotifier: the tracked
// scripts and their lookahead window per branch, their histories (wallet transactions), the UTXO
// set, and the watcher's own header chain, against which every confirmed transaction is proven
// (SPV) before it counts as confirmed. Headers connect (ConnectHeaders) or roll back to a fork
// point within the reorg safety limit; transactions above a fork go back to unproven and are
// proven again in the new chain (which catches a re-mine at the same height in another block,
// although the server sends no scripthash notification for it). It does no I/O (deriving
// scripts through ScriptSource is computation) and is not safe for concurrent use; the Watcher
// guards it.
type Tracker struct {
	src       ScriptSource
	lookahead int
	chain     *HeaderChain
	branches  [][]*ScriptState // [branch][index]
	ahead     [][]ScriptState  // [branch]: derived past the window by Peek, not tracked (Extend takes them)
	used      []int64          // highest used index per branch, -1 for none
	byHash    map[string]*ScriptState
	utxos     map[wire.OutPoint]srvUTXO        // as the server lists them
	byTx      map[chainhash.Hash][]uint32      // txid → indexes of its outputs in utxos
	byScript  map[*ScriptState][]wire.OutPoint // script → its outputs in utxos
	eff       map[wire.OutPoint]pubUTXO        // the published (trusted) view
	txs       map[chainhash.Hash]*txRecord
	hist      map[string][]chainhash.Hash    // scripthash → txids of its verified history
	raw       map[chainhash.Hash]*wire.MsgTx // wallet transactions held (ApplyTxs), a subset of txs
}

// NewTracker returns an empty tracker for src with lookahead unused scripts after the highest
// used index of each branch (Electrum's gap limit), proving transactions against chain. It
// returns ErrConfig if src has no branches, lookahead < 1 or chain is nil.
func NewTracker(src ScriptSource, lookahead int, chain *HeaderChain) (*Tracker, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: no ScriptSource", ErrConfig)
	}
	if chain == nil {
		return nil, fmt.Errorf("%w: no HeaderChain", ErrConfig)
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
		chain:     chain,
		branches:  make([][]*ScriptState, n),
		ahead:     make([][]ScriptState, n),
		used:      make([]int64, n),
		byHash:    make(map[string]*ScriptState),
		utxos:     make(map[wire.OutPoint]srvUTXO),
		byTx:      make(map[chainhash.Hash][]uint32),
		byScript:  make(map[*ScriptState][]wire.OutPoint),
		eff:       make(map[wire.OutPoint]pubUTXO),
		txs:       make(map[chainhash.Hash]*txRecord),
		hist:      make(map[string][]chainhash.Hash),
		raw:       make(map[chainhash.Hash]*wire.MsgTx),
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
	if s.Used() && int64(s.Index) > t.used[s.Branch] {
		t.used[s.Branch] = int64(s.Index)
	}
}

// restoreCheckEvery: Restore re-derives every restoreCheckEvery-th stored script (and the first
// and last of each branch, and those next to a gap) to check that the store belongs to this
// wallet. Deriving all of them (three EC derivations each for a 2-of-3) was most of the restart
// time of a large wallet; a store of another wallet already differs at its first script, and
// every stored script is still checked against its stored scripthash.
const restoreCheckEvery = 64

// maxRepairGap bounds how many missing indexes in a row Restore derives again: far more than
// one sync round ever added to a window, far fewer than a corrupt index would ask for.
const maxRepairGap = 100_000

// Restore loads persisted state into an empty tracker (its HeaderChain restored beforehand):
// scripts, the published UTXO set, the wallet transactions and each script's history (txids),
// and the raw wallet transactions held (each must be a stored wallet transaction, else
// ErrStore; one missing is fetched again when a history that lists it changes).
//
// Stored scripts are checked against the configured ScriptSource by re-deriving the first and
// the last of each branch, every restoreCheckEvery-th, and each one just above a missing index:
// one that differs, or a branch the source does not have, is ErrWalletMismatch (the database
// was written for another descriptor). Each stored script must hash to its stored scripthash
// (else ErrStore).
//
// Indexes missing below a branch's highest stored one (a database written by an older version
// that stored a window's scripts only once their histories were fetched, and was killed in
// between) are not a different wallet: they are derived again, tracked unverified, and
// returned, for the caller to store; the next session subscribes them like any new script.
//
// UTXOs must belong to stored scripts and transactions. A transaction stored as proven whose
// block is no longer in the header chain goes back to unproven. Call Extend afterwards.
func (t *Tracker) Restore(scripts []ScriptState, utxos []UTXO, txs []TxState, histories map[string][]chainhash.Hash, raw []*wire.MsgTx) (repaired []ScriptState, err error) {
	sorted := append([]ScriptState(nil), scripts...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Branch != sorted[j].Branch {
			return sorted[i].Branch < sorted[j].Branch
		}
		return sorted[i].Index < sorted[j].Index
	})
	check := func(s ScriptState) error {
		derived, err := t.derive(s.Branch, s.Index)
		if err != nil {
			return err
		}
		if !bytes.Equal(derived.PkScript, s.PkScript) {
			return fmt.Errorf("%w: stored script %d/%d differs from the script the configured descriptor derives at %d/%d", ErrWalletMismatch, s.Branch, s.Index, s.Branch, s.Index)
		}
		return nil
	}
	for i, s := range sorted {
		if int(s.Branch) >= len(t.branches) {
			return nil, fmt.Errorf("%w: the database has scripts on branch %d, the configured descriptor has %d branches", ErrWalletMismatch, s.Branch, len(t.branches))
		}
		if i > 0 && sorted[i-1].Branch == s.Branch && sorted[i-1].Index == s.Index {
			return nil, fmt.Errorf("%w: script %d/%d stored twice", ErrStore, s.Branch, s.Index)
		}
		if ScriptHash(s.PkScript) != s.ScriptHash {
			return nil, fmt.Errorf("%w: stored script %d/%d does not hash to its stored scripthash", ErrStore, s.Branch, s.Index)
		}
		first := i == 0 || sorted[i-1].Branch != s.Branch
		last := i == len(sorted)-1 || sorted[i+1].Branch != s.Branch
		gap := int(s.Index) != len(t.branches[s.Branch])
		if first || last || gap || s.Index%restoreCheckEvery == 0 {
			if err := check(s); err != nil {
				return nil, err
			}
		}
		if missing := int(s.Index) - len(t.branches[s.Branch]); missing > maxRepairGap {
			return nil, fmt.Errorf("%w: stored scripts of branch %d jump from index %d to %d", ErrStore, s.Branch, len(t.branches[s.Branch]), s.Index)
		}
		for int(s.Index) > len(t.branches[s.Branch]) { // fill the gap below s
			d, err := t.derive(s.Branch, uint32(len(t.branches[s.Branch])))
			if err != nil {
				return nil, err
			}
			if _, dup := t.byHash[d.ScriptHash]; dup {
				return nil, fmt.Errorf("%w: the script derived at %d/%d is stored at another index", ErrStore, d.Branch, d.Index)
			}
			t.add(d)
			repaired = append(repaired, *d)
		}
		if _, dup := t.byHash[s.ScriptHash]; dup {
			return nil, fmt.Errorf("%w: stored script %d/%d is stored at another index too", ErrStore, s.Branch, s.Index)
		}
		t.add(&ScriptState{Branch: s.Branch, Index: s.Index, PkScript: s.PkScript, ScriptHash: s.ScriptHash, Status: s.Status, Verified: s.Verified})
	}
	for _, x := range txs {
		if x.Verified {
			t.chain.PinHash(x.Height, x.BlockHash) // below a checkpointed base only (proven when stored)
			if h, ok := t.chain.Hash(x.Height); !ok || h != x.BlockHash {
				x.Verified, x.BlockHash = false, chainhash.Hash{} // a coinbase stays one
			}
		}
		t.txs[x.TxID] = &txRecord{TxState: x}
	}
	for sh, ids := range histories {
		if _, ok := t.byHash[sh]; !ok {
			return nil, fmt.Errorf("%w: stored history of script %s, which is not stored", ErrStore, sh)
		}
		distinct := make([]chainhash.Hash, 0, len(ids))
		for _, id := range ids {
			r, ok := t.txs[id]
			if !ok {
				return nil, fmt.Errorf("%w: stored history names transaction %s that is not stored", ErrStore, id)
			}
			if !slices.Contains(distinct, id) {
				distinct = append(distinct, id)
				r.refs++
			}
		}
		t.hist[sh] = distinct
	}
	for _, tx := range raw {
		id := tx.TxHash()
		if _, ok := t.txs[id]; !ok {
			return nil, fmt.Errorf("%w: stored raw transaction %s is not a stored wallet transaction", ErrStore, id)
		}
		t.raw[id] = tx
	}
	for _, u := range utxos {
		s, ok := t.byPk(u.PkScript)
		if !ok || s.Branch != u.Branch || s.Index != u.Index {
			return nil, fmt.Errorf("%w: stored UTXO %v pays no stored script", ErrStore, u.OutPoint)
		}
		if _, ok := t.txs[u.OutPoint.Hash]; !ok {
			return nil, fmt.Errorf("%w: stored UTXO %v has no stored transaction", ErrStore, u.OutPoint)
		}
		t.putServer(u.OutPoint, u.Value, s)
		t.publish(t.effective(t.server(u.OutPoint, t.utxos[u.OutPoint])), s)
	}
	return repaired, nil
}

// Extend derives scripts until every branch has Lookahead scripts after its highest used index
// (indices 0..highestUsed+Lookahead) and returns the new ones, unverified, for the caller to
// store (in Update.Scripts, with whatever it stores next: the stored scripts of a branch then
// stay contiguous from index 0 after any write) and to subscribe. It returns nil when the
// window is full. On an error it returns the scripts it did add, which are tracked as well.
func (t *Tracker) Extend() ([]ScriptState, error) {
	var out []ScriptState
	for b := range t.branches {
		want := t.used[b] + 1 + int64(t.lookahead)
		need := want - int64(len(t.branches[b]))
		if need <= 0 {
			continue
		}
		take := min(need, int64(len(t.ahead[b]))) // derived by Peek already
		for _, sc := range t.ahead[b][:take] {
			s := sc
			t.add(&s)
			out = append(out, s)
		}
		t.ahead[b] = t.ahead[b][take:]
		fresh, err := t.deriveRange(uint32(b), uint32(len(t.branches[b])), int(need-take))
		for i := range fresh {
			t.add(&fresh[i])
			out = append(out, fresh[i])
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Peek returns the n scripts of branch just past its lookahead window (indices Window(branch)
// up), derived but not tracked: they stay outside the window — nothing about them is applied or
// published — until Extend takes them in (without deriving them again). The initial sync of a
// dense wallet fetches their histories ahead of time. It returns nil for a branch the source
// does not have.
func (t *Tracker) Peek(branch uint32, n int) ([]ScriptState, error) {
	if int(branch) >= len(t.branches) {
		return nil, nil
	}
	if more := n - len(t.ahead[branch]); more > 0 {
		fresh, err := t.deriveRange(branch, uint32(len(t.branches[branch])+len(t.ahead[branch])), more)
		t.ahead[branch] = append(t.ahead[branch], fresh...)
		if err != nil {
			return nil, err
		}
	}
	return append([]ScriptState(nil), t.ahead[branch][:n]...), nil
}

// Window returns how many scripts of branch are tracked (indices 0..Window-1) and how many of
// them are used (verified with a history).
func (t *Tracker) Window(branch uint32) (tracked, used int) {
	if int(branch) >= len(t.branches) {
		return 0, 0
	}
	for _, s := range t.branches[branch] {
		if s.Used() {
			used++
		}
	}
	return len(t.branches[branch]), used
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
// server announced and, if they agree, takes them: the script's transactions (a changed height
// makes a transaction unproven again), and its UTXOs (replaced by the unspent list).
// Errors (nothing changes): ErrUnknownScript; ErrBadHistory for an inconsistent answer;
// ErrStatusMismatch when the history does not hash to announced — a newer status is probably on
// its way: the caller waits for it (or refetches later) rather than trusting this answer.
//
// Events, in order, for the outputs whose published state changed (see diff): FundingSeen
// (followed by FundingConfirmed if already proven), FundingConfirmed, FundingReorged, Spent (the
// funding tx is still in a history), FundingDropped (it left every history: eviction, RBF
// replacement, reorg).
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
		if prev, dup := inHistory[h.TxHash]; dup && prev != h.Height {
			return Update{}, fmt.Errorf("%w: script %d/%d: %s listed twice at different heights", ErrBadHistory, s.Branch, s.Index, h.TxHash)
		}
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
		next[op] = UTXO{OutPoint: op, Value: it.Value, PkScript: s.PkScript, Branch: s.Branch, Index: s.Index}
	}

	var up Update
	dirty := map[wire.OutPoint]struct{}{}
	// Transactions: the script leaves the ones no longer listed; others are added or moved.
	had := make(map[chainhash.Hash]bool, len(t.hist[scriptHash]))
	for _, id := range t.hist[scriptHash] {
		had[id] = true
		if _, still := inHistory[id]; still {
			continue
		}
		r := t.txs[id]
		if r == nil {
			continue
		}
		if r.refs--; r.refs <= 0 {
			delete(t.txs, id)
			delete(t.raw, id)
			up.RemoveTxs = append(up.RemoveTxs, id)
			t.markTx(dirty, id)
		}
	}
	ids := make([]chainhash.Hash, 0, len(history))
	seen := make(map[chainhash.Hash]bool, len(history))
	for _, h := range history {
		if seen[h.TxHash] {
			continue
		}
		seen[h.TxHash] = true
		ids = append(ids, h.TxHash)
		r := t.txs[h.TxHash]
		if r == nil {
			r = &txRecord{TxState: TxState{TxID: h.TxHash, Height: h.Height}}
			t.txs[h.TxHash] = r
			up.PutTxs = append(up.PutTxs, r.TxState)
		} else if r.Height != h.Height {
			r.TxState = TxState{TxID: h.TxHash, Height: h.Height, Coinbase: r.Coinbase}
			up.PutTxs = append(up.PutTxs, r.TxState)
			t.markTx(dirty, h.TxHash)
		}
		if !had[h.TxHash] {
			r.refs++
		}
	}
	if !slices.Equal(t.hist[scriptHash], ids) {
		up.Histories = map[string][]chainhash.Hash{scriptHash: ids}
	}
	if len(ids) == 0 {
		delete(t.hist, scriptHash)
	} else {
		t.hist[scriptHash] = ids
	}
	// UTXOs of this script: replaced by the unspent list.
	for _, op := range slices.Clone(t.byScript[s]) {
		if _, still := next[op]; !still {
			t.removeServer(op)
			dirty[op] = struct{}{}
		}
	}
	for op, u := range next {
		if prev, had := t.utxos[op]; !had || prev.value != u.Value || prev.s != s {
			t.putServer(op, u.Value, s)
			dirty[op] = struct{}{}
		}
	}

	changed := s.Status != status || !s.Verified
	s.Status, s.Verified = status, true
	if s.Used() && int64(s.Index) > t.used[s.Branch] {
		t.used[s.Branch] = int64(s.Index)
	}
	if changed || !up.Empty() {
		up.Scripts = append(up.Scripts, *s)
	}
	t.diff(dirty, &up, t.next())
	return up, nil
}

// srvUTXO is an output in the server's view (Tracker.utxos): its value and the tracked script
// it pays (whose PkScript, Branch and Index complete it; see server). Kept small: a large
// wallet holds one per UTXO.
type srvUTXO struct {
	value btcutil.Amount
	s     *ScriptState
}

// pubUTXO is an output in the published view (Tracker.eff): a UTXO without the fields its
// script gives (see utxo).
type pubUTXO struct {
	value    btcutil.Amount
	s        *ScriptState
	height   int32
	coinbase bool
	block    chainhash.Hash
}

func (p pubUTXO) utxo(op wire.OutPoint) UTXO {
	return UTXO{OutPoint: op, Value: p.value, PkScript: p.s.PkScript, Branch: p.s.Branch, Index: p.s.Index, Height: p.height, BlockHash: p.block, Coinbase: p.coinbase}
}

// published returns the published UTXO at op.
func (t *Tracker) published(op wire.OutPoint) (UTXO, bool) {
	p, ok := t.eff[op]
	if !ok {
		return UTXO{}, false
	}
	return p.utxo(op), true
}

// publish sets u (paying s) in the published view.
func (t *Tracker) publish(u UTXO, s *ScriptState) {
	t.eff[u.OutPoint] = pubUTXO{value: u.Value, s: s, height: u.Height, coinbase: u.Coinbase, block: u.BlockHash}
}

// server returns the server's view of op as a UTXO (Height, BlockHash and Coinbase unset).
func (t *Tracker) server(op wire.OutPoint, su srvUTXO) UTXO {
	return UTXO{OutPoint: op, Value: su.value, PkScript: su.s.PkScript, Branch: su.s.Branch, Index: su.s.Index}
}

func (t *Tracker) putServer(op wire.OutPoint, value btcutil.Amount, s *ScriptState) {
	if prev, had := t.utxos[op]; had {
		if prev.s == s {
			t.utxos[op] = srvUTXO{value: value, s: s}
			return
		}
		t.removeServer(op) // listed for another script before
	}
	t.utxos[op] = srvUTXO{value: value, s: s}
	t.byTx[op.Hash] = append(t.byTx[op.Hash], op.Index)
	t.byScript[s] = append(t.byScript[s], op)
}

func (t *Tracker) removeServer(op wire.OutPoint) {
	u, ok := t.utxos[op]
	if !ok {
		return
	}
	delete(t.utxos, op)
	if ops := slices.DeleteFunc(t.byScript[u.s], func(o wire.OutPoint) bool { return o == op }); len(ops) == 0 {
		delete(t.byScript, u.s)
	} else {
		t.byScript[u.s] = ops
	}
	if idx := slices.DeleteFunc(t.byTx[op.Hash], func(i uint32) bool { return i == op.Index }); len(idx) == 0 {
		delete(t.byTx, op.Hash)
	} else {
		t.byTx[op.Hash] = idx
	}
}

// markTx marks every output of txid (server or published view) as needing a diff.
func (t *Tracker) markTx(dirty map[wire.OutPoint]struct{}, txid chainhash.Hash) {
	// The published outputs are always a subset of the server's (a removed one is diffed in the
	// same call), so the server index finds them all.
	for _, i := range t.byTx[txid] {
		dirty[wire.OutPoint{Hash: txid, Index: i}] = struct{}{}
	}
}

// effective is u as published: confirmed (Height, BlockHash) only when its transaction is proven
// against our header chain; Coinbase once a proof showed it (it stays set when a reorg makes the
// transaction unproven again, so that such an output is never taken as spendable).
func (t *Tracker) effective(u UTXO) UTXO {
	u.Height, u.BlockHash, u.Coinbase = 0, chainhash.Hash{}, false
	if r := t.txs[u.OutPoint.Hash]; r != nil {
		u.Coinbase = r.Coinbase
		if r.Verified && r.Height > 0 {
			u.Height, u.BlockHash = r.Height, r.BlockHash
		}
	}
	return u
}

// diff brings the published view of the dirty outputs up to date, recording puts, removes and
// events in up, in a stable order (by outpoint). prevNext is the height of the next block before
// this change (for coinbase maturity; the chain's own next height when headers did not move).
func (t *Tracker) diff(dirty map[wire.OutPoint]struct{}, up *Update, prevNext int32) {
	ops := make([]wire.OutPoint, 0, len(dirty))
	for op := range dirty {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if c := bytes.Compare(ops[i].Hash[:], ops[j].Hash[:]); c != 0 {
			return c < 0
		}
		return ops[i].Index < ops[j].Index
	})
	var removed, added []Event
	for _, op := range ops {
		old, had := t.published(op)
		su, has := t.utxos[op]
		var srv UTXO
		if has {
			srv = t.server(op, su)
		}
		switch {
		case had && !has:
			delete(t.eff, op)
			up.Remove = append(up.Remove, op)
			if _, inHistory := t.txs[op.Hash]; inHistory {
				removed = append(removed, Spent{OutPoint: op, UTXO: old})
			} else {
				removed = append(removed, FundingDropped{UTXO: old})
			}
		case !had && has:
			cur := t.effective(srv)
			t.publish(cur, su.s)
			up.Put = append(up.Put, cur)
			added = append(added, FundingSeen{UTXO: cur})
			if cur.Height > 0 {
				added = append(added, FundingConfirmed{UTXO: cur, Confs: t.confs(cur)})
			}
			if ev := t.maturity(UTXO{}, false, prevNext, cur); ev != nil {
				added = append(added, ev)
			}
		case had && has:
			cur := t.effective(srv)
			if cur.Height == old.Height && cur.BlockHash == old.BlockHash && cur.Value == old.Value && cur.Coinbase == old.Coinbase {
				if ev := t.maturity(old, true, prevNext, cur); ev != nil {
					added = append(added, ev)
				}
				continue
			}
			t.publish(cur, su.s)
			up.Put = append(up.Put, cur)
			if old.Height > 0 && (cur.Height != old.Height || cur.BlockHash != old.BlockHash) {
				added = append(added, FundingReorged{UTXO: old})
			}
			if cur.Height > 0 && (cur.Height != old.Height || cur.BlockHash != old.BlockHash) {
				added = append(added, FundingConfirmed{UTXO: cur, Confs: t.confs(cur)})
			}
			if ev := t.maturity(old, true, prevNext, cur); ev != nil {
				added = append(added, ev)
			}
		}
	}
	up.Events = append(up.Events, removed...)
	up.Events = append(up.Events, added...)
}

// next returns the height of the next block on our header chain.
func (t *Tracker) next() int32 { return t.chain.Height() + 1 }

// maturity returns FundingMatured when cur (published now) may be spent in the next block and
// old (published before, if had; when the next block was at prevNext) could not, FundingImmature
// for the reverse, and nil otherwise. Only coinbase outputs ever change (see UTXO.Mature).
func (t *Tracker) maturity(old UTXO, had bool, prevNext int32, cur UTXO) Event {
	was := had && old.Coinbase && old.Mature(Tip{Height: prevNext})
	is := cur.Coinbase && cur.Mature(Tip{Height: t.next()})
	switch {
	case !was && is:
		return FundingMatured{UTXO: cur, Tip: t.chain.Tip()}
	case was && !is:
		if cur.Height > 0 {
			return FundingImmature{UTXO: cur, Tip: t.chain.Tip()}
		}
		return FundingImmature{UTXO: old, Tip: t.chain.Tip()}
	}
	return nil
}

func (t *Tracker) confs(u UTXO) int32 {
	if c := u.Confirmations(t.chain.Tip()); c > 0 {
		return c
	}
	return 1
}

// ConnectHeaders connects headers (headers[0] at height start) to the header chain (see
// HeaderChain.Connect for the checks and errors; on error nothing changes). After a reorg every
// transaction proven above the fork point goes back to unproven: its outputs become unconfirmed
// (FundingReorged) until ProofNeeded/ApplyProof prove them in the new chain. A NewTip event
// closes the update when the tip changed.
func (t *Tracker) ConnectHeaders(start int32, headers []wire.BlockHeader) (Update, error) {
	prevNext := t.next()
	r, err := t.chain.Connect(start, headers)
	if err != nil {
		return Update{}, err
	}
	var up Update
	if len(r.Connected) == 0 {
		return up, nil
	}
	up.HeadersFrom = r.Connected[0].Height
	for _, c := range r.Connected {
		h, _ := t.chain.Header(c.Height)
		up.Headers = append(up.Headers, h)
	}
	dirty := map[wire.OutPoint]struct{}{}
	if len(r.Disconnected) > 0 {
		for id, x := range t.txs {
			if x.Verified && x.Height > r.Fork {
				x.Verified, x.BlockHash = false, chainhash.Hash{} // a coinbase stays one
				up.PutTxs = append(up.PutTxs, x.TxState)
				t.markTx(dirty, id)
			}
		}
		sort.Slice(up.PutTxs, func(i, j int) bool { return bytes.Compare(up.PutTxs[i].TxID[:], up.PutTxs[j].TxID[:]) < 0 })
	}
	t.diff(dirty, &up, prevNext)
	// Coinbase outputs whose block stays: the tip moved, so they may have matured (or, on a
	// shorter best chain, become immature again).
	if prevNext != t.next() {
		var cbs []UTXO
		for op, p := range t.eff {
			u := p.utxo(op)
			if _, done := dirty[op]; !done && u.Coinbase && u.Height > 0 {
				cbs = append(cbs, u)
			}
		}
		sortUTXOs(cbs)
		for _, u := range cbs {
			if ev := t.maturity(u, true, prevNext, u); ev != nil {
				up.Events = append(up.Events, ev)
			}
		}
	}
	up.Events = append(up.Events, NewTip{Tip: t.chain.Tip(), Fork: r.Fork, Reorged: len(r.Disconnected) > 0})
	return up, nil
}

// ProofNeeded returns the transactions that the server lists as confirmed at a height our header
// chain reaches but that are not proven yet, ordered by height then txid: the caller fetches
// blockchain.transaction.get_merkle for each and passes the answer to ApplyProof.
func (t *Tracker) ProofNeeded() []TxState {
	var out []TxState
	tip := t.chain.Height()
	for _, x := range t.txs {
		if !x.Verified && x.Height > 0 && x.Height <= tip {
			out = append(out, x.TxState)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Height != out[j].Height {
			return out[i].Height < out[j].Height
		}
		return bytes.Compare(out[i].TxID[:], out[j].TxID[:]) < 0
	})
	return out
}

// Unproven returns how many transactions ProofNeeded would return.
func (t *Tracker) Unproven() int { return len(t.ProofNeeded()) }

// ApplyProof checks a blockchain.transaction.get_merkle answer for txid against our header at
// the transaction's height (VerifyMerkleProof) and, if it holds, marks the transaction proven:
// its outputs count as confirmed from now on (FundingConfirmed). A transaction no longer tracked,
// or already proven at that height, changes nothing. Errors (nothing changes; the transaction
// stays unconfirmed in the published view): ErrMerkleProof, also when the proof's height is not
// the one the history lists or our chain does not reach it yet.
func (t *Tracker) ApplyProof(txid chainhash.Hash, p MerkleProof) (Update, error) {
	var up Update
	r := t.txs[txid]
	if r == nil || (r.Verified && r.Height == p.Height) {
		return up, nil
	}
	if r.Height <= 0 || p.Height != r.Height {
		return up, fmt.Errorf("%w: tx %s: proof for height %d, history says %d", ErrMerkleProof, txid, p.Height, r.Height)
	}
	hdr, ok := t.chain.Header(p.Height)
	if !ok {
		return up, fmt.Errorf("%w: tx %s: no header at %d yet (chain at %d)", ErrMerkleProof, txid, p.Height, t.chain.Height())
	}
	if err := VerifyMerkleProof(txid, p, hdr); err != nil {
		return up, err
	}
	r.Verified, r.BlockHash, r.Coinbase = true, hdr.BlockHash(), r.Coinbase || p.Pos == 0
	up.PutTxs = append(up.PutTxs, r.TxState)
	dirty := map[wire.OutPoint]struct{}{}
	t.markTx(dirty, txid)
	t.diff(dirty, &up, t.next())
	return up, nil
}

// Tx returns the state of a wallet transaction (one listed in a tracked script's history).
func (t *Tracker) Tx(txid chainhash.Hash) (TxState, bool) {
	r, ok := t.txs[txid]
	if !ok {
		return TxState{}, false
	}
	return r.TxState, true
}

// Txs returns every wallet transaction, ordered by txid.
func (t *Tracker) Txs() []TxState {
	out := make([]TxState, 0, len(t.txs))
	for _, r := range t.txs {
		out = append(out, r.TxState)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].TxID[:], out[j].TxID[:]) < 0 })
	return out
}

// Confirmations returns how many blocks of our header chain confirm a proven wallet
// transaction (0 if it is unproven, in the mempool, or unknown).
func (t *Tracker) Confirmations(txid chainhash.Hash) int32 {
	r, ok := t.txs[txid]
	if !ok || !r.Verified || r.Height <= 0 || r.Height > t.chain.Height() {
		return 0
	}
	return t.chain.Height() - r.Height + 1
}

// Tip returns the header chain's tip; false while it is only the genesis header.
func (t *Tracker) Tip() (Tip, bool) { return t.chain.Tip(), t.chain.Height() > 0 }

// Chain returns the tracker's header chain (read it only under the tracker's guard).
func (t *Tracker) Chain() *HeaderChain { return t.chain }

// UTXO returns the wallet's UTXO at op as published (see UTXO for when it counts as confirmed).
func (t *Tracker) UTXO(op wire.OutPoint) (UTXO, bool) {
	u, ok := t.published(op)
	u.PkScript = bytes.Clone(u.PkScript)
	return u, ok
}

// UTXOs returns the UTXO set ordered by height (mempool last), txid, output index.
func (t *Tracker) UTXOs() []UTXO {
	out := make([]UTXO, 0, len(t.eff))
	for op, p := range t.eff {
		u := p.utxo(op)
		u.PkScript = bytes.Clone(u.PkScript) // callers may not alias the tracker's state
		out = append(out, u)
	}
	sortUTXOs(out)
	return out
}

// SpendableUTXOs returns the UTXOs that a transaction mined on the next block may spend: all but
// coinbase outputs younger than CoinbaseMaturity confirmations.
func (t *Tracker) SpendableUTXOs() []UTXO {
	tip := t.chain.Tip()
	var out []UTXO
	for _, u := range t.UTXOs() {
		if u.Mature(Tip{Height: tip.Height + 1}) {
			out = append(out, u)
		}
	}
	return out
}

// SpendableCoin returns the wallet's UTXO at op if a transaction mined in the next block may spend
// it: unspent as far as the tracker knows, and for a coinbase output at least CoinbaseMaturity
// confirmations at the tip (UTXO.Mature with the tip's height + 1). A signer asks this before it
// signs an input: an immature coinbase output cannot be spent yet.
func (t *Tracker) SpendableCoin(op wire.OutPoint) (UTXO, bool) {
	u, ok := t.UTXO(op)
	if !ok || !u.Mature(Tip{Height: t.chain.Tip().Height + 1}) {
		return UTXO{}, false
	}
	return u, true
}

// RawTx returns a copy of the wallet transaction txid if the tracker holds it (the transactions
// of the tracked histories, see ApplyTxs).
func (t *Tracker) RawTx(txid chainhash.Hash) (*wire.MsgTx, bool) {
	tx, ok := t.raw[txid]
	if !ok {
		return nil, false
	}
	return tx.Copy(), true
}

// Lookup reports whether pkScript is a tracked script and where it derives from.
func (t *Tracker) Lookup(pkScript []byte) (branch, index uint32, ok bool) {
	s, ok := t.byPk(pkScript)
	if !ok {
		return 0, 0, false
	}
	return s.Branch, s.Index, true
}

// byPk returns the tracked script pkScript (found by its scripthash: a second index by script
// would cost a large wallet ~100 bytes per script).
func (t *Tracker) byPk(pkScript []byte) (*ScriptState, bool) {
	s, ok := t.byHash[ScriptHash(pkScript)]
	if !ok || !bytes.Equal(s.PkScript, pkScript) {
		return nil, false
	}
	return s, true
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
