package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/psbt"
)

// BenchmarkCoinSelection measures psbt.Select on wallets of 1,000 and 10,000 UTXOs of a
// 2-of-3 P2WSH wallet (values log-uniform from 1,000 sat to 1 BTC), paying random targets
// (10,000 sat to 2 BTC) at random feerates (1–50 sat/vB): p50 and p99 of one Select call
// (branch and bound up to 100,000 tries, then single random draw), the share of calls that
// branch and bound answered; a wallet of whole-BTC coins (1…n BTC) and targets that no subset
// matches, where branch and bound finds nothing and single random draw answers; and as the baseline a sweep of the same wallet (no search: a sort and
// one pass over the coins).
func BenchmarkCoinSelection(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmarks are skipped under -short")
	}
	desc := buildBenchDescriptor(b)
	pay, _ := btcutil.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{7}, 20), &chaincfg.RegressionNetParams)
	params, err := psbt.NewSelectParams(desc, []psbt.Payment{{Address: pay, Amount: 1}})
	if err != nil {
		b.Fatal(err)
	}
	script, _ := txscript.PayToAddrScript(pay)
	const samples = 200
	for _, n := range []int{1_000, 10_000} {
		r := rand.New(rand.NewPCG(uint64(n), 1))
		coins := make([]psbt.UTXO, n)
		for i := range coins {
			var k [8]byte
			binary.LittleEndian.PutUint64(k[:], uint64(i))
			v := btcutil.Amount(1000 * math.Pow(10, 5*r.Float64())) // 1,000 sat … 1 BTC
			coins[i] = psbt.UTXO{OutPoint: wire.OutPoint{Hash: chainhash.Hash(sha256.Sum256(k[:]))},
				Coin: psbt.Coin{Value: v, PkScript: script, Index: uint32(i)}}
		}
		b.Run(fmt.Sprintf("select/utxos=%d", n), func(b *testing.B) {
			p := params
			p.Rand = r
			for b.Loop() {
				lat := make([]time.Duration, 0, samples)
				bnb := 0
				for range samples {
					target := btcutil.Amount(10_000 + r.Int64N(2e8))
					feerate := psbt.FeeRate(1 + r.IntN(50))
					began := time.Now()
					s, err := psbt.Select(coins, target, feerate, p)
					lat = append(lat, time.Since(began))
					if err != nil {
						b.Fatal(err)
					}
					if s.Algorithm == psbt.AlgorithmBnB {
						bnb++
					}
				}
				slices.Sort(lat)
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
				b.ReportMetric(100*float64(bnb)/samples, "bnb_%")
			}
		})
		b.Run(fmt.Sprintf("select-no-exact-match/utxos=%d", n), func(b *testing.B) {
			whole := make([]psbt.UTXO, n)
			for i := range whole {
				whole[i] = coins[i]
				whole[i].Value = btcutil.Amount(i+1) * btcutil.SatoshiPerBitcoin
			}
			p := params
			p.Rand = r
			for b.Loop() {
				lat := make([]time.Duration, 0, samples)
				bnb := 0
				for range samples {
					// At 1 sat/vB an input costs 105 sat: k coins lose k × 105 sat, far from
					// the half BTC the target is off by.
					target := btcutil.Amount(r.Int64N(int64(n/2))+1)*btcutil.SatoshiPerBitcoin + btcutil.SatoshiPerBitcoin/2
					began := time.Now()
					s, err := psbt.Select(whole, target, 1, p)
					lat = append(lat, time.Since(began))
					if err != nil {
						b.Fatal(err)
					}
					if s.Algorithm == psbt.AlgorithmBnB {
						bnb++
					}
				}
				slices.Sort(lat)
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
				b.ReportMetric(100*float64(bnb)/samples, "bnb_%")
			}
		})
		b.Run(fmt.Sprintf("sweep-baseline/utxos=%d", n), func(b *testing.B) {
			p := params
			p.Mode = psbt.SelectSweep
			for b.Loop() {
				lat := make([]time.Duration, 0, samples)
				for range samples {
					began := time.Now()
					if _, err := psbt.Select(coins, 0, psbt.FeeRate(1+r.IntN(50)), p); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(began))
				}
				slices.Sort(lat)
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
			}
		})
	}
}

// buildBenchDescriptor is a 2-of-3 wsh(sortedmulti) regtest wallet of three fixed test seeds.
func buildBenchDescriptor(b *testing.B) *descriptor.Descriptor {
	var parts []string
	for n := byte(1); n <= 3; n++ {
		k, err := keystore.NewKeys(bytes.Repeat([]byte{n}, 32), fmt.Sprintf("%064x", int(n)+1), &chaincfg.RegressionNetParams)
		if err != nil {
			b.Fatal(err)
		}
		parts = append(parts, k.Public.KeyOrigin()+"/<0;1>/*")
	}
	d, err := descriptor.Parse("wsh(sortedmulti(2,"+strings.Join(parts, ",")+"))", &chaincfg.RegressionNetParams)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
