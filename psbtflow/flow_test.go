package psbtflow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

var net = &chaincfg.RegressionNetParams

// memChain is a wallet view held in memory: the pure core is tested against values.
type memChain struct {
	coins   map[wire.OutPoint]psbt.Coin
	window  map[string][2]uint32
	tip     int32
	syncing bool
}

func (m *memChain) Coin(op wire.OutPoint) (psbt.Coin, bool) { c, ok := m.coins[op]; return c, ok }
func (m *memChain) Lookup(s []byte) (uint32, uint32, bool) {
	bi, ok := m.window[string(s)]
	return bi[0], bi[1], ok
}
func (m *memChain) TipHeight() int32 { return m.tip }
func (m *memChain) Synced() bool     { return !m.syncing }

type fixture struct {
	keys  [3]*keystore.Keys
	desc  *descriptor.Descriptor
	chain *memChain
}

func testKeys(t testing.TB, n byte) *keystore.Keys {
	seed := bytes.Repeat([]byte{n}, 32)
	sk := fmt.Sprintf("%064x", int(n)+1)
	k, err := keystore.NewKeys(seed, sk, net)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{}
	var parts []string
	for i := range f.keys {
		f.keys[i] = testKeys(t, byte(i+1))
		parts = append(parts, f.keys[i].Public.KeyOrigin()+"/<0;1>/*")
	}
	body := "wsh(sortedmulti(2," + strings.Join(parts, ",") + "))"
	sum, err := descriptor.Checksum(body)
	if err != nil {
		t.Fatal(err)
	}
	f.desc, err = descriptor.Parse(body+"#"+sum, net, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	f.chain = &memChain{coins: map[wire.OutPoint]psbt.Coin{}, window: map[string][2]uint32{}, tip: 500}
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 20; i++ {
			s, err := f.desc.PkScript(b, i)
			if err != nil {
				t.Fatal(err)
			}
			f.chain.window[string(s)] = [2]uint32{b, i}
		}
	}
	return f
}

// addCoin puts a wallet UTXO of value at (branch, index) on the chain and returns its outpoint.
func (f *fixture) addCoin(t testing.TB, branch, index uint32, value btcutil.Amount) wire.OutPoint {
	s, err := f.desc.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	op := wire.OutPoint{Hash: chainhash.Hash(sha256.Sum256([]byte(fmt.Sprint(branch, index, value)))), Index: 1}
	f.chain.coins[op] = psbt.Coin{Value: value, PkScript: s, Branch: branch, Index: index, Height: 490}
	return op
}

var externalAddr = func() btcutil.Address {
	pk, _ := btcec.NewPrivateKey()
	a, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), net)
	return a
}()

// buildPSBT is a Creator+Updater as a coordinator (BDK) would be: witness UTXOs, witness
// scripts, BIP32 derivations of all keys on inputs and on the change output.
func (f *fixture) buildPSBT(t testing.TB, ins []wire.OutPoint, pay btcutil.Amount, change btcutil.Amount, changeIdx uint32) *btcpsbt.Packet {
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	payScript, _ := txscript.PayToAddrScript(externalAddr)
	tx.AddTxOut(wire.NewTxOut(int64(pay), payScript))
	changeScript, _ := f.desc.PkScript(1, changeIdx)
	tx.AddTxOut(wire.NewTxOut(int64(change), changeScript))
	p, err := btcpsbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := btcpsbt.NewUpdater(p)
	for i, op := range ins {
		c := f.chain.coins[op]
		d, _ := f.desc.Derive(c.Branch, c.Index)
		u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i)
		u.AddInWitnessScript(d.WitnessScript, i)
		for _, k := range d.Keys {
			u.AddInBip32Derivation(binary.LittleEndian.Uint32(k.Fingerprint[:]), k.Path, k.PubKey.SerializeCompressed(), i)
		}
	}
	d, _ := f.desc.Derive(1, changeIdx)
	u.AddOutWitnessScript(d.WitnessScript, 1)
	for _, k := range d.Keys {
		u.AddOutBip32Derivation(binary.LittleEndian.Uint32(k.Fingerprint[:]), k.Path, k.PubKey.SerializeCompressed(), 1)
	}
	return p
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
