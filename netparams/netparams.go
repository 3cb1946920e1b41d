// Package netparams defines the Bitcoin networks cosigner runs on that btcd v0.24.2 does not
// know (testnet4, BIP-94) and names every supported network: mainnet, testnet4, signet and
// regtest (plus testnet3, btcd's own). It is a leaf package: it imports only btcd's chaincfg,
// chainhash and wire, so that chainwatch, descriptor and psbtflow can share one *chaincfg.Params
// per network (btcutil/psbt builds on btcd's v1 wire, so the params must be btcd's type).
package netparams

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// TestNet4Magic is testnet4's message start, the bytes 1c 16 3f 28 on the wire (BIP-94,
// "Message Start"); as btcd's little-endian wire.BitcoinNet it reads 0x283f161c.
const TestNet4Magic wire.BitcoinNet = 0x283f161c

// MaxTimewarp is BIP-94's time warp bound: the first block of a difficulty period may not be
// more than 600 seconds older than the block before it (BIP-94, "Time Warp Attack Prevention").
const MaxTimewarp = 600 * time.Second

// testnet4GenesisHex is the serialized genesis block given in BIP-94 ("Genesis Block").
const testnet4GenesisHex = "0100000000000000000000000000000000000000000000000000000000000000000000004e7b2b9128fe0291db0693af2ae418b767e657cd407e80cb1434221eaea7a07a046f3566ffff001dbb0c78170101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff5504ffff001d01044c4c30332f4d61792f323032342030303030303030303030303030303030303030303165626435386332343439373062336161396437383362623030313031316662653865613865393865303065ffffffff0100f2052a010000002321000000000000000000000000000000000000000000000000000000000000000000ac00000000"

// TestNet4GenesisHash is the hash BIP-94 gives for testnet4's genesis block.
const TestNet4GenesisHash = "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043"

// TestNet4Params is testnet4 (BIP-94) as btcd chain parameters: testnet3's address encodings
// (bech32 HRP "tb", base58 prefixes 111/196/239, tpub/tprv), its proof-of-work limit (bits
// 0x1d00ffff) and min-difficulty rule (ReduceMinDifficulty, 20 minutes = 2 × 10 min spacing),
// with testnet4's genesis block, message start and default P2P port 48333 (BIP-94,
// "Network Parameters").
// Deployment schedules and checkpoints are left empty: every soft fork active on mainnet in May
// 2024 is active from block 1 (BIP-94, "Consensus Rules"), and cosigner does not validate blocks.
// BIP-94's two extra difficulty rules are not expressible in chaincfg.Params: ask EnforceBIP94.
var TestNet4Params = testnet4()

// init registers testnet4 with chaincfg (chaincfg.IsBech32SegwitPrefix and the base58 lookups
// then know it); a second registration of the same magic is the only error and is harmless.
func init() { _ = chaincfg.Register(&TestNet4Params) }

func testnet4() chaincfg.Params {
	p := chaincfg.TestNet3Params
	raw, err := hex.DecodeString(testnet4GenesisHex)
	if err != nil {
		panic("netparams: testnet4 genesis hex: " + err.Error())
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		panic("netparams: testnet4 genesis block: " + err.Error())
	}
	h := blk.BlockHash()
	if h.String() != TestNet4GenesisHash {
		panic("netparams: testnet4 genesis hashes to " + h.String())
	}
	p.Name = "testnet4"
	p.Net = TestNet4Magic
	p.DefaultPort = "48333"
	p.DNSSeeds = nil
	p.GenesisBlock = &blk
	p.GenesisHash = &h
	p.Checkpoints = nil
	p.BIP0034Height, p.BIP0065Height, p.BIP0066Height = 1, 1, 1
	p.Deployments = chaincfg.TestNet3Params.Deployments
	p.PowLimit = new(big.Int).Set(chaincfg.TestNet3Params.PowLimit)
	return p
}

// EnforceBIP94 reports whether params' network follows BIP-94's difficulty rules (testnet4):
// a retarget starts from the first block of the ending period's bits, not the last's, and the
// first block of a period may not be more than MaxTimewarp older than its parent.
func EnforceBIP94(params *chaincfg.Params) bool {
	return params != nil && params.Net == TestNet4Magic
}

// ErrUnknownNetwork is returned by ByName for a name it does not know.
var ErrUnknownNetwork = fmt.Errorf("netparams: unknown network")

var byName = map[string]*chaincfg.Params{
	"mainnet":  &chaincfg.MainNetParams,
	"testnet4": &TestNet4Params,
	"signet":   &chaincfg.SigNetParams,
	"regtest":  &chaincfg.RegressionNetParams,
	"testnet3": &chaincfg.TestNet3Params,
}

// aliases are accepted spellings of the names above (btcd's and Core's).
var aliases = map[string]string{"main": "mainnet", "bitcoin": "mainnet", "testnet": "testnet3"}

// Names returns the network names ByName accepts, sorted.
func Names() []string {
	out := make([]string, 0, len(byName))
	for n := range byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ByName returns the params of a network by name (case-insensitive): "mainnet", "testnet4",
// "signet", "regtest" or "testnet3" ("main", "bitcoin" and "testnet" are aliases). The result is
// shared: do not modify it. Errors wrap ErrUnknownNetwork and list the known names.
func ByName(name string) (*chaincfg.Params, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if a, ok := aliases[n]; ok {
		n = a
	}
	if p, ok := byName[n]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownNetwork, name, strings.Join(Names(), ", "))
}

// ByGenesis returns the params whose genesis hash is h (nil if none).
func ByGenesis(h chainhash.Hash) *chaincfg.Params {
	for _, n := range Names() {
		if p := byName[n]; *p.GenesisHash == h {
			return p
		}
	}
	return nil
}
