package psbtflow

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

var net = &chaincfg.RegressionNetParams

// The pure core is tested against the shared test wallet (internal/wallettest): keys A, B, C,
// their 2-of-3 descriptor and a wallet view held in memory.
type fixture struct {
	keys  [3]*keystore.Keys
	desc  *descriptor.Descriptor
	chain *wallettest.Chain
	w     *wallettest.Wallet
}

func testKeys(t testing.TB, n byte) *keystore.Keys { return wallettest.Keys(t, n) }

func newFixture(t testing.TB) *fixture {
	w := wallettest.New(t)
	return &fixture{keys: w.Keys, desc: w.Desc, chain: w.Chain, w: w}
}

// addCoin puts a wallet UTXO of value at (branch, index) on the chain and returns its outpoint.
func (f *fixture) addCoin(t testing.TB, branch, index uint32, value btcutil.Amount) wire.OutPoint {
	return f.w.AddCoin(t, branch, index, value)
}

var externalAddr = wallettest.ExternalAddr

// buildPSBT is a Creator+Updater as a coordinator (BDK) would be (wallettest.Wallet.BuildPSBT).
func (f *fixture) buildPSBT(t testing.TB, ins []wire.OutPoint, pay btcutil.Amount, change btcutil.Amount, changeIdx uint32) *btcpsbt.Packet {
	return f.w.BuildPSBT(t, ins, pay, change, changeIdx)
}

func slotOf(t testing.TB, d *descriptor.Descriptor, k *keystore.Keys) int {
	for i, key := range d.Keys() {
		if key.XPub.String() == k.Public.AccountXPub {
			return i
		}
	}
	t.Fatal("key not in descriptor")
	return -1
}

func TestServiceDecidesOnceAndAudits(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	stranger, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pol, err := policy.Parse("p.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: "+client+"\nlimits:\n  max_per_tx: 60000 sat\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(f.desc, f.keys[1], f.chain, func() *policy.Policy { return pol }, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	op := f.addCoin(t, 0, 1, 100_000)
	small, _ := psbt.Encode(f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2), psbt.Hex)
	big, _ := psbt.Encode(f.buildPSBT(t, []wire.OutPoint{op}, 70_000, 29_000, 2), psbt.Base64)

	out1, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "1", Method: "sign_psbt", Params: []string{small}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out1, "70736274ff") {
		t.Fatal("answer is not in the request's hex encoding")
	}
	q, _, _ := psbt.Decode(out1)
	if len(q.Inputs[0].PartialSigs) != 1 {
		t.Fatalf("partial sigs = %d, want 1", len(q.Inputs[0].PartialSigs))
	}
	again, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "1", Method: "sign_psbt", Params: []string{small}})
	if err != nil || again != out1 {
		t.Fatalf("repeated request answered differently: %v", err)
	}
	_, err = svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "2", Method: "sign_psbt", Params: []string{big}})
	if err == nil || !strings.HasPrefix(err.Error(), "policy_denied: max_per_tx: ") {
		t.Fatalf("over the cap: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, nip46.Call{Client: stranger, ID: "3", Method: "sign_psbt", Params: []string{small}})
	if err == nil || !strings.HasPrefix(err.Error(), "unauthorized: ") {
		t.Fatalf("stranger: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "4", Method: "sign_psbt", Params: []string{small, `{"network":"mainnet"}`}})
	if err == nil || !strings.HasPrefix(err.Error(), "wrong_network: ") {
		t.Fatalf("wrong network: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "5", Method: "sign_psbt", Params: []string{small, `{"color":"red"}`}})
	if err == nil || !strings.HasPrefix(err.Error(), "invalid_params: ") {
		t.Fatalf("unknown option: err = %v", err)
	}
	log, err := db.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var decisions []string
	for _, e := range log {
		decisions = append(decisions, e.Decision+"/"+e.Rule)
	}
	want := "rejected/options rejected/network rejected/clients denied/max_per_tx signed/within_limits"
	if strings.Join(decisions, " ") != want {
		t.Fatalf("audit log = %v, want %s", decisions, want)
	}
}
