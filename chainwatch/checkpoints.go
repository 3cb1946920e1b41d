package chainwatch

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"math/big"
	"sync"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/netparams"
)

// RetargetInterval is the number of blocks of a difficulty period on every network cosigner
// supports (two weeks of 10-minute blocks).
const RetargetInterval = 2016

// Checkpoint is one difficulty period i of a network (blocks RetargetInterval*i to
// RetargetInterval*i+2015): Hash is the hash of its last block; Target is the target that the
// NEXT period's blocks use (what Electrum's checkpoints.json stores: "the hash of the last block
// and the target after the chunk"), or nil where the file has 0 (Electrum stores no targets for
// test networks).
type Checkpoint struct {
	Hash   chainhash.Hash
	Target *big.Int
}

// Checkpoints is a network's list of period checkpoints from period 0 up, in the format of
// Electrum's electrum/chains/<net>/checkpoints.json: a JSON array of [hash hex, target integer].
// The shipped files live in chainwatch/checkpoints/ and are refreshed by
// scripts/update-checkpoints. A nil *Checkpoints means none: the header chain starts at genesis.
type Checkpoints struct {
	List []Checkpoint
}

// ParseCheckpoints reads an Electrum checkpoints.json. Errors: not a JSON array of pairs, a hash
// that is not 64 hex characters, a target that is not a non-negative integer.
func ParseCheckpoints(data []byte) (*Checkpoints, error) {
	var raw [][2]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("chainwatch: checkpoints: %w", err)
	}
	cps := &Checkpoints{List: make([]Checkpoint, len(raw))}
	for i, e := range raw {
		var hs string
		if err := json.Unmarshal(e[0], &hs); err != nil || len(hs) != 64 {
			return nil, fmt.Errorf("chainwatch: checkpoint %d: hash %s is not 64 hex characters", i, e[0])
		}
		h, err := chainhash.NewHashFromStr(hs)
		if err != nil {
			return nil, fmt.Errorf("chainwatch: checkpoint %d: %w", i, err)
		}
		t, ok := new(big.Int).SetString(string(bytes.TrimSpace(e[1])), 10)
		if !ok || t.Sign() < 0 {
			return nil, fmt.Errorf("chainwatch: checkpoint %d: target %s is not a non-negative integer", i, e[1])
		}
		cps.List[i].Hash = *h
		if t.Sign() > 0 {
			cps.List[i].Target = t
		}
	}
	return cps, nil
}

// Height returns the height of the last checkpointed block (RetargetInterval*len-1), -1 if none.
func (c *Checkpoints) Height() int32 {
	if c == nil {
		return -1
	}
	return int32(len(c.List))*RetargetInterval - 1
}

// At returns the checkpointed hash at height (only the last block of a period has one).
func (c *Checkpoints) At(height int32) (chainhash.Hash, bool) {
	if c == nil || height < 0 || height%RetargetInterval != RetargetInterval-1 || height > c.Height() {
		return chainhash.Hash{}, false
	}
	return c.List[height/RetargetInterval].Hash, true
}

//go:embed checkpoints/*.json
var checkpointFiles embed.FS

var builtin struct {
	once sync.Once
	by   map[wire.BitcoinNet]*Checkpoints
	err  error
}

// checkpointFile names the shipped file of each network that has one.
var checkpointFile = map[wire.BitcoinNet]string{
	chaincfg.MainNetParams.Net: "checkpoints/mainnet.json",
	netparams.TestNet4Magic:    "checkpoints/testnet4.json",
	chaincfg.SigNetParams.Net:  "checkpoints/signet.json",
}

// BuiltinCheckpoints returns the checkpoints shipped for params' network (mainnet, testnet4 and
// the default signet; their last heights are in docs/networks.md), or nil for a network without
// (regtest, testnet3, a custom signet: its genesis differs). The result is shared: do not modify.
func BuiltinCheckpoints(params *chaincfg.Params) *Checkpoints {
	builtin.once.Do(func() {
		builtin.by = map[wire.BitcoinNet]*Checkpoints{}
		for net, name := range checkpointFile {
			b, err := checkpointFiles.ReadFile(name)
			if err == nil {
				var cps *Checkpoints
				if cps, err = ParseCheckpoints(b); err == nil {
					builtin.by[net] = cps
					continue
				}
			}
			builtin.err = fmt.Errorf("%s: %w", name, err)
		}
	})
	if params == nil {
		return nil
	}
	// A custom signet has another magic (it is derived from the challenge), so only the default
	// signet gets the signet file.
	return builtin.by[params.Net]
}
