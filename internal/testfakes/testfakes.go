// Package testfakes holds fakes shared by the tests of psbtflow and the packages above it: a
// watcher's proven facts (chainwatch's header chain and proven spends), the recorder of the
// late answers a remote signer would publish, and a wall clock a test steps (with the trusted
// clock's store). Test code only; it imports nothing of this module
// above chainwatch, so psbtflow's own tests can use it.
package testfakes

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
)

// Facts is a watcher's proven view: a header chain (height → hash) and the wallet
// transactions proven in its blocks. What a lying Electrum server can do to it is only what it
// can do to a real watcher: hide a transaction (Hide) — it cannot forge a proof, and only a reorg
// of the header chain (Reorg) takes a block away.
type Facts struct {
	mu     sync.Mutex
	blocks []chainhash.Hash // blocks[h] is the hash at height h; blocks[0] genesis
	spends map[wire.OutPoint]chainwatch.ProvenSpend
	salt   int
}

// NewFacts returns a header chain of one block (genesis) without spends.
func NewFacts() *Facts {
	return &Facts{blocks: []chainhash.Hash{{0xee}}, spends: map[wire.OutPoint]chainwatch.ProvenSpend{}}
}

// Mine adds a block at time at confirming a transaction txid spending ins; it returns the height.
func (f *Facts) Mine(at time.Time, txid string, ins ...wire.OutPoint) int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.salt++
	h := chainhash.Hash(sha256.Sum256([]byte(fmt.Sprint("block", len(f.blocks), f.salt))))
	f.blocks = append(f.blocks, h)
	height := int32(len(f.blocks) - 1)
	id, _ := chainhash.NewHashFromStr(txid)
	for _, op := range ins {
		f.spends[op] = chainwatch.ProvenSpend{TxID: *id, UnsignedTxID: *id, Height: height, BlockHash: h, BlockTime: at}
	}
	return height
}

// Reorg replaces every block above fork with as many new empty blocks plus one.
func (f *Facts) Reorg(fork int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int32(len(f.blocks)) - 1 - fork
	f.blocks = f.blocks[:fork+1]
	for range n + 1 {
		f.salt++
		f.blocks = append(f.blocks, chainhash.Hash(sha256.Sum256([]byte(fmt.Sprint("fork", len(f.blocks), f.salt)))))
	}
}

// Hide makes the server stop listing the spend of op (the proof is no longer offered).
func (f *Facts) Hide(op wire.OutPoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.spends, op)
}

// ProvenSpenders returns the proven spends of ops in blocks still on the header chain.
func (f *Facts) ProvenSpenders(ops []wire.OutPoint) map[wire.OutPoint]chainwatch.ProvenSpend {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[wire.OutPoint]chainwatch.ProvenSpend{}
	for _, op := range ops {
		if sp, ok := f.spends[op]; ok && int(sp.Height) < len(f.blocks) && f.blocks[sp.Height] == sp.BlockHash {
			out[op] = sp
		}
	}
	return out
}

// InBestChain reports whether the block at height is hash.
func (f *Facts) InBestChain(height int32, hash chainhash.Hash) (bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(height) < len(f.blocks) && f.blocks[height] == hash, true
}

// Tip is the header chain's tip.
func (f *Facts) Tip() chainwatch.Tip {
	f.mu.Lock()
	defer f.mu.Unlock()
	return chainwatch.Tip{Height: int32(len(f.blocks) - 1), Hash: f.blocks[len(f.blocks)-1]}
}

// Answers records the late answers a remote signer would publish (a psbtflow.Responder).
type Answers struct {
	mu  sync.Mutex
	got []string // "id result" or "id error"
}

// Respond records one answer.
func (a *Answers) Respond(_ context.Context, client, id, result string, err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.got = append(a.got, id+" "+err.Error())
	} else {
		a.got = append(a.got, id+" "+result)
	}
	return nil
}

// List returns the answers so far.
func (a *Answers) List() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

// StepClock is a wall clock and a monotonic clock that a test steps (Wall, Elapsed: the
// options of internal/trustedtime), and the trusted clock's store (its last saved value).
type StepClock struct {
	WallTime    time.Time
	ElapsedTime time.Duration
	saved       *time.Time
}

// Wall is the wall clock.
func (s *StepClock) Wall() time.Time { return s.WallTime }

// Elapsed is the monotonic time since the start.
func (s *StepClock) Elapsed() time.Duration { return s.ElapsedTime }

// LastClock returns the value saved last, if any.
func (s *StepClock) LastClock(context.Context) (time.Time, bool, error) {
	if s.saved == nil {
		return time.Time{}, false, nil
	}
	return *s.saved, true, nil
}

// SaveClock saves t.
func (s *StepClock) SaveClock(_ context.Context, t time.Time) error { s.saved = &t; return nil }
