package psbt

import (
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

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

	for _, k := range []*testKey{f.keys[0], f.keys[2]} {
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
		code   RefusalCode
		check  string
	}{
		{"witness utxo amount lies (segwit fee attack)", func(f *fixture, p *psbt.Packet) { p.Inputs[0].WitnessUtxo.Value += 1 }, UnsafePSBT, "input_amount"},
		{"foreign input", func(f *fixture, p *psbt.Packet) {
			p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 7
			s, _ := txscript.PayToAddrScript(externalAddr)
			p.Inputs[0].WitnessUtxo.PkScript = s
		}, NotOurWallet, ""},
		{"our script but spent", func(f *fixture, p *psbt.Packet) { p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 9 }, UnsafePSBT, "input_unspent"},
		{"sighash single", func(f *fixture, p *psbt.Packet) { p.Inputs[0].SighashType = txscript.SigHashSingle }, UnsafePSBT, "sighash"},
		{"foreign witness script", func(f *fixture, p *psbt.Packet) { p.Inputs[0].WitnessScript = []byte{txscript.OP_TRUE} }, UnsafePSBT, "witness_script"},
		{"outputs above inputs", func(f *fixture, p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value = 200_000 }, InvalidPSBT, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			op := f.addCoin(t, 0, 1, 100_000)
			p := f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
			c.mutate(f, p)
			_, err := Analyze(p, f.desc, f.chain)
			var me *Refusal
			if !errors.As(err, &me) || me.Code != c.code || !strings.Contains(me.Detail, c.check) {
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
