package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
)

// TestExportElectrumKeystore: --format electrum-keystore prints the key file's account key as
// Electrum's p2wsh keystore string (Vpub on test networks: the same key, chain code, depth,
// parent fingerprint and child number under SLIP-132's version bytes 0x02575483), and the other
// keystores' lines; a wallet Electrum cannot hold is refused.
func TestExportElectrumKeystore(t *testing.T) {
	net := &chaincfg.RegressionNetParams
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	pub, err := keystore.CreateKeyFile(filepath.Join(dir, "key.json"), "pass phrase for the test", net)
	if err != nil {
		t.Fatal(err)
	}
	others := testMultisig(t, net, "wsh(sortedmulti(%s))")
	keys := strings.Split(strings.TrimSuffix(strings.SplitN(others, "sortedmulti(2,", 2)[1], "))#"+others[len(others)-8:]), ",")
	body := "wsh(sortedmulti(2," + pub.KeyOrigin() + "/<0;1>/*," + keys[0] + "," + keys[1] + "))"
	sum, err := descriptor.Checksum(body)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGNER_DESCRIPTOR", body+"#"+sum)
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"export", "--format", "electrum-keystore"}, &out); err != nil {
		t.Fatal(err)
	}
	var vpub string
	var cosigners int
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "Vpub") {
			vpub = l
		}
		if strings.HasPrefix(l, "#   x") {
			cosigners++
		}
	}
	raw, ver, err := base58.CheckDecode(vpub)
	if err != nil {
		t.Fatalf("keystore line %q: %v\n%s", vpub, err, out.String())
	}
	tp, _, _ := base58.CheckDecode(pub.AccountXPub)
	// CheckDecode splits off one version byte; SLIP-132's version is four.
	if ver != 0x02 || !bytes.Equal(raw[:3], []byte{0x57, 0x54, 0x83}) || !bytes.Equal(raw[3:], tp[3:]) {
		t.Fatalf("keystore %s is not %s under Vpub's version bytes", vpub, pub.AccountXPub)
	}
	if _, err := hdkeychain.NewKeyFromString(pub.AccountXPub); err != nil {
		t.Fatal(err)
	}
	if cosigners != 2 || !strings.Contains(out.String(), "channel: electrum_nostr") {
		t.Fatalf("output:\n%s", out.String())
	}
	t.Setenv("COSIGNER_DESCRIPTOR", testMultisig(t, net, "wsh(multi(%s))"))
	if err := runCommand(context.Background(), []string{"export", "--format", "electrum-keystore"}, &out); err == nil || !strings.Contains(err.Error(), "sortedmulti") {
		t.Fatalf("multi(): %v", err)
	}
}
