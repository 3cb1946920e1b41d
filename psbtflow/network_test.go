package psbtflow

import (
	"testing"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/netparams"
)

// TestSameNetworkTestnet4: a sign_psbt "network" option must name the co-signer's network;
// testnet4 is not testnet3, although both use tb1 addresses and tpub keys.
func TestSameNetworkTestnet4(t *testing.T) {
	for _, c := range []struct {
		name string
		p    *chaincfg.Params
		want bool
	}{
		{"testnet4", &netparams.TestNet4Params, true},
		{"TESTNET4", &netparams.TestNet4Params, true},
		{"testnet", &netparams.TestNet4Params, false},
		{"testnet3", &netparams.TestNet4Params, false},
		{"testnet4", &chaincfg.TestNet3Params, false},
		{"testnet", &chaincfg.TestNet3Params, true},
		{"signet", &chaincfg.SigNetParams, true},
		{"mainnet", &chaincfg.MainNetParams, true},
	} {
		if got := sameNetwork(c.name, c.p); got != c.want {
			t.Errorf("sameNetwork(%q, %s) = %v", c.name, c.p.Name, got)
		}
	}
}
