package main

import (
	"strings"
	"testing"

	"github.com/custodyagents/cosigner/netparams"
)

// TestConfigNetworkTestnet4: COSIGNER_NETWORK=testnet4 selects BIP-94's testnet4.
func TestConfigNetworkTestnet4(t *testing.T) {
	t.Setenv("COSIGNER_NETWORK", "testnet4")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Params()
	if err != nil || p != &netparams.TestNet4Params {
		t.Fatalf("params %v, %v", p, err)
	}
}

// TestConfigPlaintextElectrumOnPublicNetworks: on a public network a tcp:// server that is not
// on a loopback address is refused unless COSIGNER_ELECTRUM_ALLOW_PLAINTEXT is set; ssl://,
// loopback and regtest are accepted.
func TestConfigPlaintextElectrumOnPublicNetworks(t *testing.T) {
	for _, c := range []struct {
		network, url, allow string
		ok                  bool
	}{
		{"mainnet", "tcp://electrum.example.org:50001", "false", false},
		{"testnet4", "ssl://127.0.0.1:50002,tcp://10.0.0.5:50001", "false", false},
		{"signet", "tcp://[2001:db8::1]:50001", "false", false},
		{"mainnet", "tcp://electrum.example.org:50001", "true", true},
		{"mainnet", "ssl://electrum.example.org:50002", "false", true},
		{"mainnet", "tcp://127.0.0.1:50001,tcp://localhost:50001,tcp://[::1]:50001", "false", true},
		{"regtest", "tcp://172.17.0.1:50001", "false", true},
	} {
		t.Run(c.network+" "+c.url, func(t *testing.T) {
			t.Setenv("COSIGNER_NETWORK", c.network)
			t.Setenv("COSIGNER_ELECTRUM_URL", c.url)
			t.Setenv("COSIGNER_ELECTRUM_ALLOW_PLAINTEXT", c.allow)
			_, err := loadConfig()
			if c.ok && err != nil {
				t.Fatal(err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "COSIGNER_ELECTRUM_ALLOW_PLAINTEXT")) {
				t.Fatalf("error %v, want a refusal naming COSIGNER_ELECTRUM_ALLOW_PLAINTEXT", err)
			}
		})
	}
}
