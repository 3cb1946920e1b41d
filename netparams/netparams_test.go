package netparams

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"
)

// TestTestNet4Facts checks testnet4's params against BIP-94
// (https://github.com/bitcoin/bips/blob/master/bip-0094.mediawiki): genesis hash and header
// fields, message start 0x1c163f28 (bytes on the wire), port 48333, and testnet's encodings.
func TestTestNet4Facts(t *testing.T) {
	p := &TestNet4Params
	if got := p.GenesisHash.String(); got != "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043" {
		t.Fatalf("genesis hash %s", got)
	}
	g := p.GenesisBlock.Header
	if g.Timestamp.Unix() != 1714777860 || g.Nonce != 393743547 || g.Bits != 0x1d00ffff || g.Version != 1 {
		t.Fatalf("genesis header %+v", g)
	}
	if got := p.GenesisBlock.Header.MerkleRoot.String(); got != "7aa0a7ae1e223414cb807e40cd57e667b718e42aaf9306db9102fe28912b7b4e" {
		t.Fatalf("genesis merkle root %s", got)
	}
	if root := p.GenesisBlock.Transactions[0].TxHash(); root != p.GenesisBlock.Header.MerkleRoot {
		t.Fatalf("genesis coinbase %s is not the merkle root", root)
	}
	var magic [4]byte
	magic[0], magic[1], magic[2], magic[3] = byte(p.Net), byte(p.Net>>8), byte(p.Net>>16), byte(p.Net>>24)
	if magic != [4]byte{0x1c, 0x16, 0x3f, 0x28} {
		t.Fatalf("message start % x", magic)
	}
	if p.DefaultPort != "48333" || p.Bech32HRPSegwit != "tb" || p.PowLimitBits != 0x1d00ffff || !p.ReduceMinDifficulty || p.PoWNoRetargeting {
		t.Fatalf("params %s %s %08x %v %v", p.DefaultPort, p.Bech32HRPSegwit, p.PowLimitBits, p.ReduceMinDifficulty, p.PoWNoRetargeting)
	}
	if !EnforceBIP94(p) || EnforceBIP94(&chaincfg.TestNet3Params) || EnforceBIP94(&chaincfg.MainNetParams) {
		t.Fatal("EnforceBIP94 must hold for testnet4 only")
	}
	// Testnet's address encodings: a tb1 address decodes on testnet4 and not on mainnet.
	const addr = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx" // BIP-173 test vector
	a, err := btcutil.DecodeAddress(addr, p)
	if err != nil || !a.IsForNet(p) {
		t.Fatalf("decode %s on testnet4: %v", addr, err)
	}
	if a.IsForNet(&chaincfg.MainNetParams) {
		t.Fatal("tb1 address counted as mainnet's")
	}
	if p.Net == wire.TestNet3 || *p.GenesisHash == *chaincfg.TestNet3Params.GenesisHash {
		t.Fatal("testnet4 shares testnet3's identity")
	}
	// Changing the copy does not touch testnet3.
	if chaincfg.TestNet3Params.Name != "testnet3" {
		t.Fatalf("testnet3 params changed: %s", chaincfg.TestNet3Params.Name)
	}
}

func TestByName(t *testing.T) {
	for name, want := range map[string]string{
		"mainnet":  "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
		"Main":     "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
		"testnet4": "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
		"signet":   "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
		"regtest":  "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
		"testnet":  "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
	} {
		p, err := ByName(name)
		if err != nil || p.GenesisHash.String() != want {
			t.Errorf("%s: %v %v", name, p, err)
			continue
		}
		if ByGenesis(*p.GenesisHash) != p {
			t.Errorf("%s: ByGenesis", name)
		}
	}
	if _, err := ByName("testnet5"); !errors.Is(err, ErrUnknownNetwork) {
		t.Fatalf("unknown name: %v", err)
	}
}
