package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
)

// testMultisig returns a 2-of-3 descriptor (with checksum) of three fresh BIP-48 account keys,
// in the shape `wrap` gives (e.g. "wsh(sortedmulti(%s))").
func testMultisig(t *testing.T, net *chaincfg.Params, wrap string) string {
	t.Helper()
	coin := uint32(1)
	if net.Net == chaincfg.MainNetParams.Net {
		coin = 0
	}
	var keys []string
	for i := 0; i < 3; i++ {
		seed := sha256.Sum256([]byte(fmt.Sprintf("export test key %d %s", i, t.Name())))
		master, err := hdkeychain.NewMaster(seed[:], net)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := master.ECPubKey()
		fp := hex.EncodeToString(btcutil.Hash160(pub.SerializeCompressed())[:4])
		k := master
		for _, s := range []uint32{48, coin, 0, 2} {
			if k, err = k.Derive(hdkeychain.HardenedKeyStart + s); err != nil {
				t.Fatal(err)
			}
		}
		xpub, _ := k.Neuter()
		keys = append(keys, fmt.Sprintf("[%s/48h/%dh/0h/2h]%s/<0;1>/*", fp, coin, xpub))
	}
	body := fmt.Sprintf(wrap, "2,"+strings.Join(keys, ","))
	sum, err := descriptor.Checksum(body)
	if err != nil {
		t.Fatal(err)
	}
	return body + "#" + sum
}

// walletAddresses derives n receive and n change addresses the way the watcher does
// (descriptor.PkScript).
func walletAddresses(t *testing.T, desc string, net *chaincfg.Params, n int) (receive, change []string) {
	t.Helper()
	d, err := descriptor.Parse(desc, net, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	for b := uint32(0); b < 2; b++ {
		for i := 0; i < n; i++ {
			pk, err := d.PkScript(b, uint32(i))
			if err != nil {
				t.Fatal(err)
			}
			_, addrs, _, err := txscript.ExtractPkScriptAddrs(pk, net)
			if err != nil || len(addrs) != 1 {
				t.Fatalf("address of %x: %v", pk, err)
			}
			if b == 0 {
				receive = append(receive, addrs[0].EncodeAddress())
			} else {
				change = append(change, addrs[0].EncodeAddress())
			}
		}
	}
	return receive, change
}

// TestExportImportsIntoBDKAndElectrum: what `cosigner export` prints, imported into bdkpython
// (descriptors) and into Debian's Electrum library (the wallet file with SLIP-132 keystores),
// gives the same receive and change addresses as cosigner's own derivation, for P2WSH and
// P2SH-P2WSH on regtest and P2WSH on mainnet (Zpub).
func TestExportImportsIntoBDKAndElectrum(t *testing.T) {
	if testing.Short() {
		t.Skip("needs bdkpython (scripts/install-tools.sh) and python3-electrum")
	}
	tools, err := devnet.ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	venvPython := filepath.Join(tools, "venv", "bin", "python")
	repo, err := devnet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(repo, "e2e", "clients", "export_check.py")
	const n = 25
	for _, tc := range []struct {
		name, wrap, network, prefix string
		net                         *chaincfg.Params
	}{
		{"regtest p2wsh", "wsh(sortedmulti(%s))", "regtest", "Vpub", &chaincfg.RegressionNetParams},
		{"regtest p2sh-p2wsh", "sh(wsh(sortedmulti(%s)))", "regtest", "Upub", &chaincfg.RegressionNetParams},
		{"mainnet p2wsh", "wsh(sortedmulti(%s))", "mainnet", "Zpub", &chaincfg.MainNetParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desc := testMultisig(t, tc.net, tc.wrap)
			t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
			t.Setenv("COSIGNER_NETWORK", tc.network)
			t.Setenv("COSIGNER_DESCRIPTOR", desc)
			receive, change := walletAddresses(t, desc, tc.net, n)
			check := func(python, kind string, args ...string) {
				var exported bytes.Buffer
				if err := runCommand(context.Background(), append([]string{"export"}, args...), &exported); err != nil {
					t.Fatal(err)
				}
				if kind == "electrum" && !strings.Contains(exported.String(), `"xpub": "`+tc.prefix) {
					t.Fatalf("electrum keystores are not %s:\n%s", tc.prefix, exported.String())
				}
				cmd := exec.Command(python, script, kind, tc.network, fmt.Sprint(n))
				cmd.Stdin = &exported
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				outb, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s import: %v\n%s\nexported:\n%s", kind, err, stderr.String(), exported.String())
				}
				var got struct{ Receive, Change []string }
				if err := json.Unmarshal(outb, &got); err != nil {
					t.Fatalf("%s: %v: %s", kind, err, outb)
				}
				if strings.Join(got.Receive, ",") != strings.Join(receive, ",") || strings.Join(got.Change, ",") != strings.Join(change, ",") {
					t.Fatalf("%s addresses differ from cosigner's:\n got receive %v\nwant receive %v\n got change %v\nwant change %v",
						kind, got.Receive, receive, got.Change, change)
				}
			}
			check(venvPython, "bdk")
			check("/usr/bin/python3", "electrum", "--format", "electrum")
		})
	}
}

// TestExportFormats: the Core and Specter shapes, and Electrum's refusals.
func TestExportFormats(t *testing.T) {
	desc := testMultisig(t, &chaincfg.RegressionNetParams, "wsh(sortedmulti(%s))")
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	t.Setenv("COSIGNER_DESCRIPTOR", desc)
	d, _ := descriptor.Parse(desc, &chaincfg.RegressionNetParams)
	recv, _ := d.BranchString(0)
	chg, _ := d.BranchString(1)
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"export", "--format", "core"}, &out); err != nil {
		t.Fatal(err)
	}
	var core []struct {
		Desc     string
		Internal bool
		Active   bool
	}
	if err := json.Unmarshal(out.Bytes(), &core); err != nil || len(core) != 2 || core[0].Desc != recv || core[1].Desc != chg || !core[1].Internal || core[0].Internal || !core[0].Active {
		t.Fatalf("core: %v %s", err, out.String())
	}
	out.Reset()
	if err := runCommand(context.Background(), []string{"export", "--format", "specter", "--label", "vault"}, &out); err != nil {
		t.Fatal(err)
	}
	var sp struct{ Label, Descriptor string }
	if err := json.Unmarshal(out.Bytes(), &sp); err != nil || sp.Label != "vault" || sp.Descriptor != recv {
		t.Fatalf("specter: %v %s", err, out.String())
	}
	if err := runCommand(context.Background(), []string{"export", "--format", "pdf"}, &out); err == nil {
		t.Fatal("unknown format accepted")
	}
	unsorted := testMultisig(t, &chaincfg.RegressionNetParams, "wsh(multi(%s))")
	t.Setenv("COSIGNER_DESCRIPTOR", unsorted)
	if err := runCommand(context.Background(), []string{"export", "--format", "electrum"}, &out); err == nil || !strings.Contains(err.Error(), "sortedmulti") {
		t.Fatalf("electrum export of multi(): %v", err)
	}
}
