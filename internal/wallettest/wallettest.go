// Package wallettest is the test wallet shared by the tests of the packages above psbtflow
// (outbound, signer/cosign): a 2-of-3 wsh(sortedmulti) regtest wallet with three fixed keys,
// its view of the chain held in memory, and a Creator+Updater that builds PSBTs spending it as
// a coordinator (BDK) would. Test code only: no production package imports it.
package wallettest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/psbt"
)

// Net is the test wallet's network.
var Net = &chaincfg.RegressionNetParams

// Quiet is a logger that writes nothing.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ExternalAddr is a P2WPKH address outside the wallet (a fresh key per process).
var ExternalAddr = func() btcutil.Address {
	pk, _ := btcec.NewPrivateKey()
	a, _ := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), Net)
	return a
}()

// Chain is a wallet view held in memory (psbt.ChainView): the coins, the first 20 scripts
// of both branches, a tip height. Not safe for concurrent use: wrap it with a lock.
type Chain struct {
	Coins   map[wire.OutPoint]psbt.Coin
	Window  map[string][2]uint32
	Height  int32
	Syncing bool
}

// Coin is the unspent wallet coin at op.
func (m *Chain) Coin(op wire.OutPoint) (psbt.Coin, bool) { c, ok := m.Coins[op]; return c, ok }

// Lookup is the (branch, index) of a tracked script.
func (m *Chain) Lookup(s []byte) (uint32, uint32, bool) {
	bi, ok := m.Window[string(s)]
	return bi[0], bi[1], ok
}

// TipHeight is the tip's height.
func (m *Chain) TipHeight() int32 { return m.Height }

// Synced is false while Syncing.
func (m *Chain) Synced() bool { return !m.Syncing }

// Wallet is the test wallet: keys A, B, C (Keys[0..2]) and their 2-of-3 descriptor.
type Wallet struct {
	Keys  [3]*keystore.Keys
	Desc  *descriptor.Descriptor
	Chain *Chain
}

// Keys returns the n-th fixed test key (seed of 32 bytes n, Nostr key n+1).
func Keys(t testing.TB, n byte) *keystore.Keys {
	seed := bytes.Repeat([]byte{n}, 32)
	sk := fmt.Sprintf("%064x", int(n)+1)
	k, err := keystore.NewKeys(seed, sk, Net)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// New returns the test wallet with an empty chain at height 500.
func New(t testing.TB) *Wallet {
	w := &Wallet{}
	var parts []string
	for i := range w.Keys {
		w.Keys[i] = Keys(t, byte(i+1))
		parts = append(parts, w.Keys[i].Public.KeyOrigin()+"/<0;1>/*")
	}
	body := "wsh(sortedmulti(2," + strings.Join(parts, ",") + "))"
	sum, err := descriptor.Checksum(body)
	if err != nil {
		t.Fatal(err)
	}
	w.Desc, err = descriptor.Parse(body+"#"+sum, Net, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	w.Chain = &Chain{Coins: map[wire.OutPoint]psbt.Coin{}, Window: map[string][2]uint32{}, Height: 500}
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 20; i++ {
			s, err := w.Desc.PkScript(b, i)
			if err != nil {
				t.Fatal(err)
			}
			w.Chain.Window[string(s)] = [2]uint32{b, i}
		}
	}
	return w
}

// AddCoin puts a wallet coin of value at (branch, index), confirmed at height 490, on the chain
// and returns its outpoint.
func (w *Wallet) AddCoin(t testing.TB, branch, index uint32, value btcutil.Amount) wire.OutPoint {
	s, err := w.Desc.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	op := wire.OutPoint{Hash: chainhash.Hash(sha256.Sum256([]byte(fmt.Sprint(branch, index, value)))), Index: 1}
	w.Chain.Coins[op] = psbt.Coin{Value: value, PkScript: s, Branch: branch, Index: index, Height: 490}
	return op
}

// BuildPSBT is a Creator+Updater as a coordinator (BDK) would be: ins paying pay to
// ExternalAddr and change to the change branch at changeIdx, with witness UTXOs, witness
// scripts and the BIP32 derivations of all keys on inputs and on the change output.
func (w *Wallet) BuildPSBT(t testing.TB, ins []wire.OutPoint, pay, change btcutil.Amount, changeIdx uint32) *btcpsbt.Packet {
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	payScript, _ := txscript.PayToAddrScript(ExternalAddr)
	tx.AddTxOut(wire.NewTxOut(int64(pay), payScript))
	changeScript, _ := w.Desc.PkScript(1, changeIdx)
	tx.AddTxOut(wire.NewTxOut(int64(change), changeScript))
	p, err := btcpsbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := btcpsbt.NewUpdater(p)
	for i, op := range ins {
		c := w.Chain.Coins[op]
		d, _ := w.Desc.Derive(c.Branch, c.Index)
		u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i)
		u.AddInWitnessScript(d.WitnessScript, i)
		for _, k := range d.Keys {
			u.AddInBip32Derivation(binary.LittleEndian.Uint32(k.Fingerprint[:]), k.Path, k.PubKey.SerializeCompressed(), i)
		}
	}
	d, _ := w.Desc.Derive(1, changeIdx)
	u.AddOutWitnessScript(d.WitnessScript, 1)
	for _, k := range d.Keys {
		u.AddOutBip32Derivation(binary.LittleEndian.Uint32(k.Fingerprint[:]), k.Path, k.PubKey.SerializeCompressed(), 1)
	}
	return p
}

// Slot is the position of key k in the descriptor's keys.
func (w *Wallet) Slot(t testing.TB, k *keystore.Keys) int {
	for i, key := range w.Desc.Keys() {
		if key.XPub.String() == k.Public.AccountXPub {
			return i
		}
	}
	t.Fatal("key not in descriptor")
	return -1
}

// Sign adds key Keys[k]'s partial signatures to every input of p (BIP-174 Signer) and fails
// the test unless every input got one.
func (w *Wallet) Sign(t testing.TB, p *btcpsbt.Packet, k int) {
	t.Helper()
	n, err := psbt.SignInputs(p, nil, w.Desc, w.Slot(t, w.Keys[k]), w.Keys[k], w.Chain)
	if err != nil || n != len(p.Inputs) {
		t.Fatalf("SignInputs(key %d) = %d, %v", k, n, err)
	}
}
