package psbtflow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

var net = &chaincfg.RegressionNetParams

// memChain is a wallet view held in memory: the pure core is tested against values.
type memChain struct {
	coins   map[wire.OutPoint]Coin
	window  map[string][2]uint32
	tip     int32
	syncing bool
}

func (m *memChain) Coin(op wire.OutPoint) (Coin, bool) { c, ok := m.coins[op]; return c, ok }
func (m *memChain) Lookup(s []byte) (uint32, uint32, bool) {
	bi, ok := m.window[string(s)]
	return bi[0], bi[1], ok
}
func (m *memChain) TipHeight() int32 { return m.tip }
func (m *memChain) Synced() bool     { return !m.syncing }

type fixture struct {
	keys  [3]*signer.Keys
	desc  *descriptor.Descriptor
	chain *memChain
}

func testKeys(t testing.TB, n byte) *signer.Keys {
	seed := bytes.Repeat([]byte{n}, 32)
	sk := fmt.Sprintf("%064x", int(n)+1)
	k, err := signer.NewKeys(seed, sk, net)
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
	f.chain = &memChain{coins: map[wire.OutPoint]Coin{}, window: map[string][2]uint32{}, tip: 500}
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
	f.chain.coins[op] = Coin{Value: value, PkScript: s, Branch: branch, Index: index, Height: 490}
	return op
}

var externalAddr = func() btcutil.Address {
	pk, _ := btcec.NewPrivateKey()
	a, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), net)
	return a
}()

// buildPSBT is a Creator+Updater as a coordinator (BDK) would be: witness UTXOs, witness
// scripts, BIP32 derivations of all keys on inputs and on the change output.
func (f *fixture) buildPSBT(t testing.TB, ins []wire.OutPoint, pay btcutil.Amount, change btcutil.Amount, changeIdx uint32) *psbt.Packet {
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	payScript, _ := txscript.PayToAddrScript(externalAddr)
	tx.AddTxOut(wire.NewTxOut(int64(pay), payScript))
	changeScript, _ := f.desc.PkScript(1, changeIdx)
	tx.AddTxOut(wire.NewTxOut(int64(change), changeScript))
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := psbt.NewUpdater(p)
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

func slotOf(t testing.TB, d *descriptor.Descriptor, k *signer.Keys) int {
	for i, key := range d.Keys() {
		if key.XPub.String() == k.Public.AccountXPub {
			return i
		}
	}
	t.Fatal("key not in descriptor")
	return -1
}

func TestAnalyzeAndSignTwoOfThree(t *testing.T) {
	f := newFixture(t)
	in1 := f.addCoin(t, 0, 0, 60_000)
	in2 := f.addCoin(t, 0, 3, 50_000)
	p := f.buildPSBT(t, []wire.OutPoint{in1, in2}, 70_000, 39_000, 0)

	a, err := Analyze(p, f.desc, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	if a.InputTotal != 110_000 || a.ChangeTotal != 39_000 || a.Fee != 1_000 || a.Outflow != 71_000 {
		t.Fatalf("analysis totals = in %v change %v fee %v outflow %v", a.InputTotal, a.ChangeTotal, a.Fee, a.Outflow)
	}
	if a.Outputs[0].Kind != "spend" || a.Outputs[1].Kind != "change" || !a.RBF || a.Inputs[0].Confirmations != 11 {
		t.Fatalf("analysis = %+v", a)
	}
	// 2 P2WSH 2-of-3 inputs, P2WPKH + P2WSH outputs: 166 bytes stripped, 2 × 254 witness
	// bytes at most, plus marker and flag: weight 1174, 294 vB.
	if a.VSize != 294 {
		t.Fatalf("vsize estimate %d out of range", a.VSize)
	}

	for _, k := range []*signer.Keys{f.keys[0], f.keys[2]} {
		n, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain)
		if err != nil || n != 2 {
			t.Fatalf("SignInputs = %d, %v", n, err)
		}
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		t.Fatalf("finalize with 2 of 3 signatures: %v", err)
	}
	final, err := psbt.Extract(p)
	if err != nil {
		t.Fatal(err)
	}
	f.verifyScripts(t, final)
	if got := finalVSize(final); got > a.VSize || a.VSize-got > 4 {
		t.Fatalf("vsize estimate %d, real %d", a.VSize, got)
	}
}

func TestAnalyzeRefuses(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(f *fixture, p *psbt.Packet)
		code   string
		check  string
	}{
		{"witness utxo amount lies (segwit fee attack)", func(f *fixture, p *psbt.Packet) { p.Inputs[0].WitnessUtxo.Value += 1 }, signer.CodeUnsafePSBT, "input_amount"},
		{"foreign input", func(f *fixture, p *psbt.Packet) {
			p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 7
			s, _ := txscript.PayToAddrScript(externalAddr)
			p.Inputs[0].WitnessUtxo.PkScript = s
		}, signer.CodeNotOurWallet, ""},
		{"our script but spent", func(f *fixture, p *psbt.Packet) { p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 9 }, signer.CodeUnsafePSBT, "input_unspent"},
		{"sighash single", func(f *fixture, p *psbt.Packet) { p.Inputs[0].SighashType = txscript.SigHashSingle }, signer.CodeUnsafePSBT, "sighash"},
		{"foreign witness script", func(f *fixture, p *psbt.Packet) { p.Inputs[0].WitnessScript = []byte{txscript.OP_TRUE} }, signer.CodeUnsafePSBT, "witness_script"},
		{"outputs above inputs", func(f *fixture, p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value = 200_000 }, signer.CodeInvalidPSBT, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			op := f.addCoin(t, 0, 1, 100_000)
			p := f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
			c.mutate(f, p)
			_, err := Analyze(p, f.desc, f.chain)
			var me *signer.MethodError
			if !errors.As(err, &me) || me.Code != c.code || !strings.Contains(me.Message, c.check) {
				t.Fatalf("Analyze error = %v, want %s with %q", err, c.code, c.check)
			}
		})
	}
}

func TestDecodeEncodings(t *testing.T) {
	f := newFixture(t)
	op := f.addCoin(t, 0, 1, 100_000)
	p := f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	for _, enc := range []Encoding{Base64, Hex} {
		s, err := Encode(p, enc)
		if err != nil {
			t.Fatal(err)
		}
		q, got, err := Decode(s)
		if err != nil || got != enc || q.UnsignedTx.TxHash() != p.UnsignedTx.TxHash() {
			t.Fatalf("round trip %v: %v %v", enc, got, err)
		}
	}
	for _, bad := range []string{"", "hello", "cHNidP8BAAAA", "70736274ff00", strings.Repeat("A", 10)} {
		if _, _, err := Decode(bad); err == nil || !strings.HasPrefix(err.Error(), "invalid_psbt: ") {
			t.Fatalf("Decode(%q) error = %v", bad, err)
		}
	}
}

func FuzzDecodeAnalyze(f *testing.F) {
	fx := newFixture(f)
	op := fx.addCoin(f, 0, 1, 100_000)
	p := fx.buildPSBT(f, []wire.OutPoint{op}, 50_000, 49_000, 2)
	s, _ := Encode(p, Base64)
	f.Add(s)
	h, _ := Encode(p, Hex)
	f.Add(h)
	f.Fuzz(func(t *testing.T, s string) {
		p, _, err := Decode(s)
		if err != nil {
			return
		}
		_, _ = Analyze(p, fx.desc, fx.chain)
	})
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
	small, _ := Encode(f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2), Hex)
	big, _ := Encode(f.buildPSBT(t, []wire.OutPoint{op}, 70_000, 29_000, 2), Base64)

	out1, err := svc.SignPSBT(ctx, signer.Request{Client: client, ID: "1", Method: "sign_psbt", Params: []string{small}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out1, "70736274ff") {
		t.Fatal("answer is not in the request's hex encoding")
	}
	q, _, _ := Decode(out1)
	if len(q.Inputs[0].PartialSigs) != 1 {
		t.Fatalf("partial sigs = %d, want 1", len(q.Inputs[0].PartialSigs))
	}
	again, err := svc.SignPSBT(ctx, signer.Request{Client: client, ID: "1", Method: "sign_psbt", Params: []string{small}})
	if err != nil || again != out1 {
		t.Fatalf("repeated request answered differently: %v", err)
	}
	_, err = svc.SignPSBT(ctx, signer.Request{Client: client, ID: "2", Method: "sign_psbt", Params: []string{big}})
	if err == nil || !strings.HasPrefix(err.Error(), "policy_denied: max_per_tx: ") {
		t.Fatalf("over the cap: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, signer.Request{Client: stranger, ID: "3", Method: "sign_psbt", Params: []string{small}})
	if err == nil || !strings.HasPrefix(err.Error(), "unauthorized: ") {
		t.Fatalf("stranger: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, signer.Request{Client: client, ID: "4", Method: "sign_psbt", Params: []string{small, `{"network":"mainnet"}`}})
	if err == nil || !strings.HasPrefix(err.Error(), "wrong_network: ") {
		t.Fatalf("wrong network: err = %v", err)
	}
	_, err = svc.SignPSBT(ctx, signer.Request{Client: client, ID: "5", Method: "sign_psbt", Params: []string{small, `{"color":"red"}`}})
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
