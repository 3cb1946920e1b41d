package psbt

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// adversarial is one crafted PSBT (docs/psbt-safety.md)
// and the refusal it must get: a refusal code and, for UnsafePSBT, the check's name.
type adversarial struct {
	name string
	// kinds limits the case to some wallet kinds (nil: every kind).
	kinds []string
	// mutate turns an honest 1-input / 2-output PSBT (pay, change at 1/2) into the attack.
	mutate func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet
	code   RefusalCode
	check  string
}

var segwitV0 = []string{"wsh", "sh-wsh"}
var taproot = []string{"tr", "tr-tree"}

func adversarialCases() []adversarial {
	return []adversarial{
		{name: "segwit fee attack: witness_utxo lies about the amount",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.Inputs[0].WitnessUtxo.Value -= 40_000 // the coordinator hides 40,000 sat of fee
				return p
			}, code: UnsafePSBT, check: "input_amount"},
		{name: "non_witness_utxo of another transaction",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				prev := wire.NewMsgTx(2)
				prev.AddTxIn(wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{3}}, nil, nil))
				prev.AddTxOut(wire.NewTxOut(100_000, p.Inputs[0].WitnessUtxo.PkScript))
				prev.AddTxOut(wire.NewTxOut(100_000, p.Inputs[0].WitnessUtxo.PkScript))
				p.Inputs[0].NonWitnessUtxo = prev
				return p
			}, code: UnsafePSBT, check: "non_witness_utxo"},
		{name: "change to a foreign key with forged BIP32 derivations",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				// The change output pays the attacker; its derivations claim our slots' change
				// path 1/2 with the attacker's key.
				attacker, _ := btcec.NewPrivateKey()
				addr, _ := btcutil.NewAddressTaproot(schnorr.SerializePubKey(attacker.PubKey()), net)
				p.UnsignedTx.TxOut[1].PkScript, _ = txscript.PayToAddrScript(addr)
				// One derivation, of our first slot at 1/2, names the attacker's key.
				if ds := p.Outputs[1].Bip32Derivation; len(ds) > 0 {
					ds[0].PubKey = attacker.PubKey().SerializeCompressed()
					p.Outputs[1].Bip32Derivation = ds[:1]
				}
				if ds := p.Outputs[1].TaprootBip32Derivation; len(ds) > 0 {
					ds[0].XOnlyPubKey = schnorr.SerializePubKey(attacker.PubKey())
					p.Outputs[1].TaprootBip32Derivation = ds[:1]
				}
				p.Outputs[1].WitnessScript, p.Outputs[1].RedeemScript, p.Outputs[1].TaprootInternalKey = nil, nil, nil
				return p
			}, code: UnsafePSBT, check: "change_key"},
		{name: "change that swaps the quorum (2-of-3 to 1-of-4)",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				// Our three keys at the honest change path plus the attacker's, threshold 1:
				// the derivations are all true, the script is not ours.
				var k [3]string
				for i := range f.keys {
					k[i] = f.keys[i].Public.KeyOrigin()
				}
				attacker := testKeys(t, 99).Public.KeyOrigin()
				mp := "/<0;1>/*"
				body := "wsh(sortedmulti(1," + k[0] + mp + "," + k[1] + mp + "," + k[2] + mp + "," + attacker + mp + "))"
				if f.desc.Type() == descriptor.P2SHP2WSH {
					body = "sh(" + body + ")"
				}
				if f.desc.Type() == descriptor.P2TR {
					body = "tr(" + descriptor.NUMSKey + ",multi_a(1," + k[0] + mp + "," + k[1] + mp + "," + k[2] + mp + "," + attacker + mp + "))"
				}
				swapped, err := descriptor.Parse(body, net)
				if err != nil {
					t.Fatal(err)
				}
				d, _ := swapped.Derive(1, 2)
				p.UnsignedTx.TxOut[1].PkScript = d.PkScript
				p.Outputs[1] = psbt.POutput{}
				fillOutput(&p.Outputs[1], d)
				return p
			}, code: UnsafePSBT, check: "change_script"},
		{name: "change index far beyond the lookahead",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				d, _ := f.desc.Derive(1, 5000)
				p.UnsignedTx.TxOut[1].PkScript = d.PkScript
				p.Outputs[1] = psbt.POutput{}
				fillOutput(&p.Outputs[1], d)
				return p
			}, code: UnsafePSBT, check: "change_index"},
		{name: "SIGHASH_NONE", mutate: sighash(txscript.SigHashNone), code: UnsafePSBT, check: "sighash"},
		{name: "SIGHASH_SINGLE", mutate: sighash(txscript.SigHashSingle), code: UnsafePSBT, check: "sighash"},
		{name: "SIGHASH_ALL|ANYONECANPAY", mutate: sighash(txscript.SigHashAll | txscript.SigHashAnyOneCanPay), code: UnsafePSBT, check: "sighash"},
		{name: "SIGHASH_NONE|ANYONECANPAY", mutate: sighash(txscript.SigHashNone | txscript.SigHashAnyOneCanPay), code: UnsafePSBT, check: "sighash"},
		{name: "foreign input",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				op := wire.OutPoint{Hash: chainhash.Hash{7}, Index: 0}
				p.UnsignedTx.AddTxIn(wire.NewTxIn(&op, nil, nil))
				s, _ := txscript.PayToAddrScript(externalAddr)
				p.Inputs = append(p.Inputs, psbt.PInput{WitnessUtxo: wire.NewTxOut(500_000, s)})
				return p
			}, code: NotOurWallet},
		{name: "duplicated input",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				in := *p.UnsignedTx.TxIn[0]
				p.UnsignedTx.AddTxIn(&in)
				p.Inputs = append(p.Inputs, p.Inputs[0])
				return p
			}, code: InvalidPSBT, check: "duplicate_input"},
		{name: "input already spent on chain",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				delete(f.chain.coins, p.UnsignedTx.TxIn[0].PreviousOutPoint) // the watcher saw it spent
				return p
			}, code: UnsafePSBT, check: "input_unspent"},
		{name: "v2 with TX_MODIFIABLE",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				q, _, err := Decode(base64.StdEncoding.EncodeToString(toV2(t, p, 0x03)))
				if err != nil {
					t.Fatal(err)
				}
				return q
			}, code: UnsafePSBT, check: "tx_modifiable"},
		{name: "v2 with only Has SIGHASH_SINGLE set",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				q, _, err := Decode(base64.StdEncoding.EncodeToString(toV2(t, p, 0x04)))
				if err != nil {
					t.Fatal(err)
				}
				return q
			}, code: UnsafePSBT, check: "tx_modifiable"},
		{name: "foreign witness script", kinds: segwitV0,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.Inputs[0].WitnessScript = []byte{txscript.OP_TRUE}
				return p
			}, code: UnsafePSBT, check: "witness_script"},
		{name: "foreign redeem script", kinds: segwitV0,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.Inputs[0].RedeemScript = append([]byte{0x00, 0x20}, make([]byte, 32)...)
				return p
			}, code: UnsafePSBT, check: "redeem_script"},
		{name: "taproot leaf not in the registered tree", kinds: taproot,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				// A 1-of-1 leaf of the attacker's key with a control block for it.
				attacker, _ := btcec.NewPrivateKey()
				script, _ := txscript.NewScriptBuilder().AddData(schnorr.SerializePubKey(attacker.PubKey())).AddOp(txscript.OP_CHECKSIG).Script()
				l := p.Inputs[0].TaprootLeafScript[0]
				cb := append([]byte{l.ControlBlock[0] ^ 1}, l.ControlBlock[1:]...) // a key of its own (the control block)
				p.Inputs[0].TaprootLeafScript = append(p.Inputs[0].TaprootLeafScript,
					&psbt.TaprootTapLeafScript{ControlBlock: cb, Script: script, LeafVersion: l.LeafVersion})
				return reencode(t, p)
			}, code: UnsafePSBT, check: "taproot_leaf"},
		{name: "taproot signature for a foreign leaf hash", kinds: taproot,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.Inputs[0].TaprootScriptSpendSig = append(p.Inputs[0].TaprootScriptSpendSig, &psbt.TaprootScriptSpendSig{
					XOnlyPubKey: p.Inputs[0].TaprootBip32Derivation[0].XOnlyPubKey, LeafHash: make([]byte, 32), Signature: make([]byte, 64)})
				return p
			}, code: UnsafePSBT, check: "taproot_leaf"},
		{name: "taproot internal key swapped", kinds: taproot,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				k, _ := btcec.NewPrivateKey()
				p.Inputs[0].TaprootInternalKey = schnorr.SerializePubKey(k.PubKey())
				return p
			}, code: UnsafePSBT, check: "taproot_internal_key"},
		{name: "taproot merkle root swapped", kinds: taproot,
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.Inputs[0].TaprootMerkleRoot = make([]byte, 32)
				return p
			}, code: UnsafePSBT, check: "taproot_merkle_root"},
		{name: "outputs worth more than inputs",
			mutate: func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
				p.UnsignedTx.TxOut[0].Value = 200_000
				return p
			}, code: InvalidPSBT},
	}
}

// withFreshChain returns a fixture sharing f's keys and descriptor with a copy of its wallet
// view (the window) and no coins, so that a case may change the view freely.
func (f *fixture) withFreshChain() *fixture {
	g := *f
	g.chain = &memChain{coins: map[wire.OutPoint]Coin{}, window: map[string][2]uint32{}, tip: f.chain.tip}
	for k, v := range f.chain.window {
		g.chain.window[k] = v
	}
	return &g
}

// reencode passes p through Encode and Decode, as a request does: the attack must survive the
// wire format.
func reencode(t *testing.T, p *psbt.Packet) *psbt.Packet {
	s, err := Encode(p, Base64)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := Decode(s)
	if err != nil {
		t.Fatalf("crafted PSBT does not decode: %v", err)
	}
	return q
}

func sighash(h txscript.SigHashType) func(*testing.T, *fixture, *psbt.Packet) *psbt.Packet {
	return func(t *testing.T, f *fixture, p *psbt.Packet) *psbt.Packet {
		p.Inputs[0].SighashType = h
		return p
	}
}

// TestAdversarialPSBTs runs every attack against every wallet kind it applies to: each is
// refused with its own code and check (after a trip through Encode and Decode, as on the wire),
// and the same PSBT without the attack is accepted (so the refusal is the attack's doing).
func TestAdversarialPSBTs(t *testing.T) {
	for _, kind := range walletKinds {
		base := newKindFixture(t, kind) // keys, descriptor and watched window: shared, read-only
		for _, c := range adversarialCases() {
			if c.kinds != nil && !contains(c.kinds, kind) {
				continue
			}
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				f := base.withFreshChain()
				op := f.addCoin(t, 0, 1, 100_000)
				if _, err := Analyze(f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2), f.desc, f.chain); err != nil {
					t.Fatalf("honest PSBT refused: %v", err)
				}
				p := reencode(t, c.mutate(t, f, f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)))
				_, err := Analyze(p, f.desc, f.chain)
				var me *Refusal
				if !errors.As(err, &me) || me.Code != c.code || (c.check != "" && !strings.HasPrefix(me.Detail, c.check+": ")) {
					t.Fatalf("Analyze error = %v, want %s: %s", err, c.code, c.check)
				}
			})
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Outputs and transaction fields that are not attacks but that people and policy rules should
// see come back as warnings.
func TestWarnings(t *testing.T) {
	f := newKindFixture(t, "wsh")
	op := f.addCoin(t, 0, 1, 100_000)
	p := f.build(t, []wire.OutPoint{op}, 50_000, 40_000, 2)
	data, _ := txscript.NullDataScript([]byte("hello"))
	p.UnsignedTx.AddTxOut(wire.NewTxOut(0, data))
	p.UnsignedTx.AddTxOut(wire.NewTxOut(1_000, []byte{txscript.OP_TRUE}))
	recv, _ := f.desc.PkScript(0, 4)
	p.UnsignedTx.AddTxOut(wire.NewTxOut(2_000, recv))
	p.Outputs = append(p.Outputs, psbt.POutput{}, psbt.POutput{}, psbt.POutput{})
	p.UnsignedTx.LockTime = 900
	p.UnsignedTx.TxIn[0].Sequence = 10 // BIP-68: 10 blocks
	a, err := Analyze(p, f.desc, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, w := range a.Warnings {
		codes = append(codes, w.Code)
	}
	want := []string{WarnRelativeLock, WarnLockTime, WarnLockTimeFuture, WarnOpReturn, WarnNonstandard, WarnSelfReceive}
	if strings.Join(codes, " ") != strings.Join(want, " ") {
		t.Fatalf("warnings %v, want %v", codes, want)
	}
	if a.Outputs[2].Kind != KindOpReturn || a.Outputs[3].Kind != KindSpend || a.Outputs[4].Kind != KindSpend ||
		a.LockTimeKind != "height" || !a.RBF || a.Inputs[0].RelativeLock != "10 blocks" {
		t.Fatalf("analysis %+v", a)
	}
	// Self-payment to the receive branch counts as spend: outflow is inputs − change.
	if a.Outflow != 100_000-40_000 {
		t.Fatalf("outflow %v", a.Outflow)
	}

	// A taproot descriptor whose internal key is a co-signer's: key path warning.
	var k [3]string
	for i := range f.keys {
		k[i] = f.keys[i].Public.KeyOrigin()
	}
	g := newKindFixture(t, "tr")
	g.desc, _ = descriptor.Parse("tr("+k[0]+"/<0;1>/*,multi_a(2,"+k[1]+"/<0;1>/*,"+k[2]+"/<0;1>/*))", net)
	g.chain.window = map[string][2]uint32{}
	for i := uint32(0); i < 5; i++ {
		s, _ := g.desc.PkScript(1, i)
		g.chain.window[string(s)] = [2]uint32{1, i}
	}
	op = g.addCoin(t, 0, 1, 100_000)
	a, err = Analyze(g.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2), g.desc, g.chain)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Warnings) != 1 || a.Warnings[0].Code != WarnKeyPathSpend {
		t.Fatalf("warnings %+v", a.Warnings)
	}
}

// A derivation with one of our fingerprints on a path outside the descriptor (a co-signer's
// own single-key wallet, say) is a spend with a warning, not an error.
func TestForeignPathDerivationIsSpend(t *testing.T) {
	f := newKindFixture(t, "wsh")
	op := f.addCoin(t, 0, 1, 100_000)
	p := f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	fp := f.keys[0].MasterFingerprint()
	pk, _ := btcec.NewPrivateKey()
	addr, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), net)
	p.UnsignedTx.TxOut[0].PkScript, _ = txscript.PayToAddrScript(addr)
	p.Outputs[0].Bip32Derivation = []*psbt.Bip32Derivation{{PubKey: pk.PubKey().SerializeCompressed(),
		MasterKeyFingerprint: binary.LittleEndian.Uint32(fp[:]), Bip32Path: []uint32{84 + 1<<31, 1 + 1<<31, 1 << 31, 0, 0}}}
	a, err := Analyze(p, f.desc, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	if a.Outputs[0].Kind != KindSpend || len(a.Warnings) != 1 || a.Warnings[0].Code != WarnForeignPath {
		t.Fatalf("%+v", a)
	}
}

// nLockTime L is final in a block of height h when L < h: with the tip at 500, L = 500 can be
// mined in the next block and L = 501 cannot.
func TestLockTimeBoundary(t *testing.T) {
	for _, c := range []struct {
		lock   uint32
		future bool
	}{{499, false}, {500, false}, {501, true}} {
		f := newKindFixture(t, "wsh") // tip 500
		op := f.addCoin(t, 0, 1, 100_000)
		p := f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
		p.UnsignedTx.LockTime = c.lock
		a, err := Analyze(p, f.desc, f.chain)
		if err != nil {
			t.Fatal(err)
		}
		future := false
		for _, w := range a.Warnings {
			future = future || w.Code == WarnLockTimeFuture
		}
		if future != c.future || a.LockTimeKind != "height" {
			t.Errorf("nLockTime %d: future %v (%s), want %v", c.lock, future, a.LockTimeKind, c.future)
		}
	}
}
