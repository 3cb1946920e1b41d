package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// pipelineSamples is how many requests each pipeline benchmark runs (one after another, on one
// goroutine: the figures are per core).
const pipelineSamples = 400

// BenchmarkPipelineP2WSH: the co-signer's core pipeline for one sign_psbt request on a 2-of-3
// wsh(sortedmulti) wallet, 2 inputs / 2 outputs: Decode → Analyze → policy.Evaluate →
// SignInputs → Encode, no I/O. Reports requests/s on one core, p50/p99 per request, and the
// floor: the two ECDSA signatures alone (BIP-143 sighash + sign), measured in the same run.
// After the first request the pipeline's caches hold what the coins need (the descriptor's
// derivations, this co-signer's key pairs, the parsed public keys), as in a daemon answering
// requests for the same coins; the first request's cold cost is in p99.
func BenchmarkPipelineP2WSH(b *testing.B) { benchPipeline(b, "wsh") }

// BenchmarkPipelineTaproot: the same for tr(NUMS,multi_a(2,A,B,C)) (BIP-341 script-path
// sighash + Schnorr signature per input as the floor).
func BenchmarkPipelineTaproot(b *testing.B) { benchPipeline(b, "tr") }

func benchPipeline(b *testing.B, kind string) {
	if testing.Short() {
		b.Skip("benchmark: skipped under -short")
	}
	w := newPipelineWallet(b, kind)
	req := w.request(b)
	pol, err := policy.Parse("bench.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: "+strings.Repeat("ab", 32)+"\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		b.Fatal(err)
	}
	client := strings.Repeat("ab", 32)

	pipeline := func() error {
		p, enc, err := psbt.Decode(req)
		if err != nil {
			return err
		}
		a, err := psbt.Analyze(p, w.desc, w.chain)
		if err != nil {
			return err
		}
		if d := policy.Evaluate(pol, policy.Input{Client: client, Method: "sign_psbt", Outflow: a.Outflow, Fee: a.Fee}); d.Outcome != policy.Allow {
			return fmt.Errorf("policy: %s", d.Reason)
		}
		n, err := psbt.SignInputs(p, a, w.desc, w.slot, w.keys, w.chain)
		if err != nil || n != 2 {
			return fmt.Errorf("signed %d: %v", n, err)
		}
		_, err = psbt.Encode(p, enc)
		return err
	}
	// The floor: what signing alone costs for the same transaction and keys.
	p, _, _ := psbt.Decode(req)
	floor := w.signaturesOnly(b, p)

	runtime.GC()
	b.ResetTimer()
	pipe, sigs := measurePair(b, pipelineSamples, pipeline, floor)
	b.StopTimer()
	b.ReportMetric(pipe.perSecond, "requests/s/core")
	b.ReportMetric(pipe.p50, "p50_ms")
	b.ReportMetric(pipe.p99, "p99_ms")
	b.ReportMetric(sigs.perSecond, "sigs_only_requests/s/core")
	b.ReportMetric(sigs.p50, "sigs_only_p50_ms")
	b.ReportMetric(pipe.p50/sigs.p50, "x_floor")
	figure, goal, limit := "decode→analyze→evaluate→sign, 2-in/2-out P2WSH", "≤ 2×", 2.0
	if kind == "tr" {
		figure, goal, limit = "decode→analyze→evaluate→sign, 2-in/2-out taproot script path", "≤ 1.5×", 1.5
	}
	// The ratio of the medians: on a shared 2-core machine a preempted sample lands on whichever
	// of the two was running, and the summed times swing with it (the throughput ratio is
	// reported beside it as x_floor_throughput).
	ratio := pipe.p50 / sigs.p50
	b.ReportMetric(sigs.perSecond/pipe.perSecond, "x_floor_throughput")
	Record(Row{
		Key:      map[string]string{"wsh": "pipeline-p2wsh", "tr": "pipeline-taproot"}[kind],
		Figure:   figure,
		Value:    fmt.Sprintf("%.0f req/s/core (p50 %.3f ms)", pipe.perSecond, pipe.p50),
		Baseline: fmt.Sprintf("signatures alone %.0f/s (p50 %.3f ms)", sigs.perSecond, sigs.p50),
		Ratio:    fmt.Sprintf("%.2f× the floor (p50; %.2f× by throughput)", ratio, sigs.perSecond/pipe.perSecond),
		Goal:     goal,
		Met:      MetIf(ratio <= limit),
	})
}

// BenchmarkPipelineService: the same 2-in/2-out P2WSH request through the real request path,
// psbtflow.Service.SignPSBT over a SQLite store in a temporary directory (admit: authorize,
// bounds, decode once; the request row; analysis against the wallet view; the spend ledger
// read; policy.Evaluate; SignInputs; Encode; the verdict, audit row and ledger reservation
// written in one transaction). Each request has a new id (so none is answered from the store).
// Reported against the same floor as BenchmarkPipelineP2WSH (the two ECDSA signatures alone,
// measured in the same run); the difference from pipeline-p2wsh is the service's own work,
// mostly the two durable SQLite commits per request.
func BenchmarkPipelineService(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: skipped under -short")
	}
	ctx := context.Background()
	w := newPipelineWallet(b, "wsh")
	req := w.request(b)
	client := strings.Repeat("ab", 32)
	pol, err := policy.Parse("bench.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: "+client+"\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "cosigner.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc, err := psbtflow.NewService(w.desc, w.keys, w.chain, func() *policy.Policy { return pol }, db,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	pipeline := func() error {
		n++
		out, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: fmt.Sprint("bench-", n), Method: "sign_psbt", Params: []string{req}})
		if err != nil {
			return err
		}
		if out == req {
			return fmt.Errorf("request %d: nothing signed", n)
		}
		return nil
	}
	p, _, _ := psbt.Decode(req)
	floor := w.signaturesOnly(b, p)

	runtime.GC()
	b.ResetTimer()
	pipe, sigs := measurePair(b, pipelineSamples, pipeline, floor)
	b.StopTimer()
	b.ReportMetric(pipe.perSecond, "requests/s/core")
	b.ReportMetric(pipe.p50, "p50_ms")
	b.ReportMetric(pipe.p99, "p99_ms")
	b.ReportMetric(sigs.perSecond, "sigs_only_requests/s/core")
	b.ReportMetric(pipe.p50/sigs.p50, "x_floor")
	// The ratio of the medians: on a shared 2-core machine a preempted sample lands on whichever
	// of the two was running, and the summed times swing with it (the throughput ratio is
	// reported beside it as x_floor_throughput).
	ratio := pipe.p50 / sigs.p50
	b.ReportMetric(sigs.perSecond/pipe.perSecond, "x_floor_throughput")
	Record(Row{
		Key:      "pipeline-service",
		Figure:   "sign_psbt through psbtflow.Service (SQLite store), 2-in/2-out P2WSH",
		Value:    fmt.Sprintf("%.0f req/s/core (p50 %.3f ms)", pipe.perSecond, pipe.p50),
		Baseline: fmt.Sprintf("signatures alone %.0f/s (p50 %.3f ms)", sigs.perSecond, sigs.p50),
		Ratio:    fmt.Sprintf("%.2f× the floor (p50; %.2f× by throughput)", ratio, sigs.perSecond/pipe.perSecond),
		Goal:     "≤ 2× (as pipeline-p2wsh)",
		Met:      MetIf(ratio <= 2),
	})
}

type sampleStats struct{ perSecond, p50, p99 float64 }

// measurePair runs f and its floor g n times each, alternating (f, g, f, g, …) so that both
// see the same machine load, and returns each one's statistics: requests per second over its
// own summed time, p50 and p99.
func measurePair(b *testing.B, n int, f, g func() error) (sampleStats, sampleStats) {
	df, dg := make([]time.Duration, n), make([]time.Duration, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := g(); err != nil {
			b.Fatal(err)
		}
		df[i], dg[i] = t1.Sub(t0), time.Since(t1)
	}
	return stats(df), stats(dg)
}

func stats(d []time.Duration) sampleStats {
	var total time.Duration
	for _, x := range d {
		total += x
	}
	n := len(d)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return sampleStats{perSecond: float64(n) / total.Seconds(), p50: ms(d[n/2]), p99: ms(d[n*99/100])}
}

// pipelineWallet is a 2-of-3 wallet with this co-signer's key (slot), two funded coins and an
// in-memory wallet view.
type pipelineWallet struct {
	desc  *descriptor.Descriptor
	keys  *keystore.Keys
	slot  int
	chain *memView
	coins []wire.OutPoint
}

type memView struct {
	coins   map[wire.OutPoint]psbt.Coin
	scripts map[string][2]uint32
}

func (m *memView) Coin(op wire.OutPoint) (psbt.Coin, bool) { c, ok := m.coins[op]; return c, ok }
func (m *memView) Lookup(s []byte) (uint32, uint32, bool) {
	bi, ok := m.scripts[string(s)]
	return bi[0], bi[1], ok
}
func (m *memView) TipHeight() int32 { return 1000 }
func (m *memView) Synced() bool     { return true }

func newPipelineWallet(b *testing.B, kind string) *pipelineWallet {
	net := &chaincfg.RegressionNetParams
	var all []*keystore.Keys
	var exprs []string
	for i := byte(1); i <= 3; i++ {
		k, err := keystore.NewKeys(bytes.Repeat([]byte{i}, 32), fmt.Sprintf("%064x", int(i)+1), net)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, k)
		exprs = append(exprs, k.Public.KeyOrigin()+"/<0;1>/*")
	}
	body := "wsh(sortedmulti(2," + strings.Join(exprs, ",") + "))"
	if kind == "tr" {
		body = "tr(" + descriptor.NUMSKey + ",multi_a(2," + strings.Join(exprs, ",") + "))"
	}
	d, err := descriptor.Parse(body, net)
	if err != nil {
		b.Fatal(err)
	}
	w := &pipelineWallet{desc: d, keys: all[0], chain: &memView{coins: map[wire.OutPoint]psbt.Coin{}, scripts: map[string][2]uint32{}}}
	for i, k := range d.Keys() {
		if k.XPub.String() == all[0].Public.AccountXPub {
			w.slot = i
		}
	}
	for br := uint32(0); br < 2; br++ {
		for i := uint32(0); i < 20; i++ {
			s, _ := d.PkScript(br, i)
			w.chain.scripts[string(s)] = [2]uint32{br, i}
		}
	}
	for i := uint32(0); i < 2; i++ {
		s, _ := d.PkScript(0, i)
		op := wire.OutPoint{Hash: chainhash.Hash(sha256.Sum256([]byte{byte(i)})), Index: i}
		w.chain.coins[op] = psbt.Coin{Value: 100_000, PkScript: s, Branch: 0, Index: i, Height: 900}
		w.coins = append(w.coins, op)
	}
	return w
}

// request is a coordinator's 2-in/2-out PSBT (pay + change) with the Updater fields a wallet
// such as BDK fills, as base64.
func (w *pipelineWallet) request(b *testing.B) string {
	tx := wire.NewMsgTx(2)
	for _, op := range w.coins {
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	pk, _ := btcec.NewPrivateKey()
	addr, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), w.desc.Network())
	pay, _ := txscript.PayToAddrScript(addr)
	tx.AddTxOut(wire.NewTxOut(150_000, pay))
	cd, _ := w.desc.Derive(1, 0)
	tx.AddTxOut(wire.NewTxOut(49_000, cd.PkScript))
	p, err := btcpsbt.NewFromUnsignedTx(tx)
	if err != nil {
		b.Fatal(err)
	}
	for i, op := range w.coins {
		c := w.chain.coins[op]
		d, _ := w.desc.Derive(c.Branch, c.Index)
		p.Inputs[i].WitnessUtxo = wire.NewTxOut(int64(c.Value), c.PkScript)
		if d.Taproot == nil {
			p.Inputs[i].WitnessScript = d.WitnessScript
		} else {
			p.Inputs[i].TaprootInternalKey = schnorr.SerializePubKey(d.Taproot.InternalKey)
			p.Inputs[i].TaprootMerkleRoot = d.Taproot.MerkleRoot
			l := d.Taproot.Leaves[0]
			p.Inputs[i].TaprootLeafScript = []*btcpsbt.TaprootTapLeafScript{{ControlBlock: l.ControlBlock, Script: l.Script, LeafVersion: l.LeafVersion}}
		}
		for _, k := range d.Keys {
			fp := binary.LittleEndian.Uint32(k.Fingerprint[:])
			if d.Taproot == nil {
				p.Inputs[i].Bip32Derivation = append(p.Inputs[i].Bip32Derivation, &btcpsbt.Bip32Derivation{PubKey: k.PubKey.SerializeCompressed(), MasterKeyFingerprint: fp, Bip32Path: k.Path})
			} else {
				p.Inputs[i].TaprootBip32Derivation = append(p.Inputs[i].TaprootBip32Derivation, &btcpsbt.TaprootBip32Derivation{XOnlyPubKey: schnorr.SerializePubKey(k.PubKey), MasterKeyFingerprint: fp, Bip32Path: k.Path})
			}
		}
	}
	for _, k := range cd.Keys {
		fp := binary.LittleEndian.Uint32(k.Fingerprint[:])
		if cd.Taproot == nil {
			p.Outputs[1].Bip32Derivation = append(p.Outputs[1].Bip32Derivation, &btcpsbt.Bip32Derivation{PubKey: k.PubKey.SerializeCompressed(), MasterKeyFingerprint: fp, Bip32Path: k.Path})
		} else {
			p.Outputs[1].TaprootBip32Derivation = append(p.Outputs[1].TaprootBip32Derivation, &btcpsbt.TaprootBip32Derivation{XOnlyPubKey: schnorr.SerializePubKey(k.PubKey), MasterKeyFingerprint: fp, Bip32Path: k.Path})
		}
	}
	s, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// signaturesOnly returns the floor: computing the sighashes (with the transaction's midstate
// cache) and signing both inputs with already derived private keys, nothing else.
func (w *pipelineWallet) signaturesOnly(b *testing.B, p *btcpsbt.Packet) func() error {
	prev := txscript.NewMultiPrevOutFetcher(nil)
	var privs []*btcec.PrivateKey
	var ders []*descriptor.Derived
	key := w.desc.Keys()[w.slot]
	for _, op := range w.coins {
		c := w.chain.coins[op]
		prev.AddPrevOut(op, wire.NewTxOut(int64(c.Value), c.PkScript))
		priv, err := w.keys.DeriveRelative(append(append([]uint32(nil), key.Steps[c.Branch]...), c.Index)...)
		if err != nil {
			b.Fatal(err)
		}
		d, _ := w.desc.Derive(c.Branch, c.Index)
		privs, ders = append(privs, priv), append(ders, d)
	}
	return func() error {
		hashes := txscript.NewTxSigHashes(p.UnsignedTx, prev)
		for i := range w.coins {
			c := w.chain.coins[w.coins[i]]
			var err error
			if ders[i].Taproot == nil {
				_, err = txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, int64(c.Value), ders[i].WitnessScript, txscript.SigHashAll, privs[i])
			} else {
				l := ders[i].Taproot.Leaves[0]
				_, err = txscript.RawTxInTapscriptSignature(p.UnsignedTx, hashes, i, int64(c.Value), c.PkScript,
					txscript.NewTapLeaf(l.LeafVersion, l.Script), txscript.SigHashDefault, privs[i])
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}
