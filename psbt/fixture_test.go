package psbt

// The shared fixture of this package's tests: three co-signers' keys, a 2-of-3 wallet, a wallet
// view in memory, and a PSBT as a coordinator (BDK) would build it.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
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
	keys  [3]*testKey
	desc  *descriptor.Descriptor
	chain *memChain
}

// testKey is a co-signer's BIP48 account key (m/48'/1'/0'/2' on regtest) from a seed: the
// KeySource the daemon's keystore.Keys is, without its key file.
type testKey struct {
	Public  testKeyInfo
	account *hdkeychain.ExtendedKey
	fp      [4]byte
	path    []uint32
}

type testKeyInfo struct{ Fingerprint, OriginPath, AccountXPub string }

// KeyOrigin is "[fingerprint/origin]xpub", the key expression for a descriptor (BIP-380).
func (p testKeyInfo) KeyOrigin() string {
	return "[" + p.Fingerprint + "/" + p.OriginPath + "]" + p.AccountXPub
}

func (k *testKey) MasterFingerprint() [4]byte { return k.fp }

func (k *testKey) AccountPath() []uint32 { return append([]uint32(nil), k.path...) }

func (k *testKey) DeriveRelative(steps ...uint32) (*btcec.PrivateKey, error) {
	key := k.account
	for _, s := range steps {
		var err error
		if key, err = key.Derive(s); err != nil {
			return nil, err
		}
	}
	return key.ECPrivKey()
}

var _ KeySource = (*testKey)(nil)

func testKeys(t testing.TB, n byte) *testKey {
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{n}, 32), net)
	if err != nil {
		t.Fatal(err)
	}
	path := []uint32{48 + hdkeychain.HardenedKeyStart, 1 + hdkeychain.HardenedKeyStart, hdkeychain.HardenedKeyStart, 2 + hdkeychain.HardenedKeyStart}
	mpub, err := master.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	k := &testKey{account: master, path: path}
	copy(k.fp[:], btcutil.Hash160(mpub.SerializeCompressed())[:4])
	for _, s := range path {
		if k.account, err = k.account.Derive(s); err != nil {
			t.Fatal(err)
		}
	}
	xpub, err := k.account.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	k.Public = testKeyInfo{Fingerprint: hex.EncodeToString(k.fp[:]), OriginPath: strings.TrimPrefix(descriptor.FormatPath(path), "m/"), AccountXPub: xpub.String()}
	return k
}

// newFixture is the wsh(sortedmulti(2,…)) wallet of the three test keys.
func newFixture(t testing.TB) *fixture { return newKindFixture(t, "wsh") }

// walletKinds are the registered descriptors every analysis and signing test runs against:
// the same three keys as wsh, sh(wsh) and taproot (NUMS internal key; a single multi_a leaf and
// a tree of three 2-of-2 leaves).
var walletKinds = []string{"wsh", "sh-wsh", "tr", "tr-tree"}

func descriptorBody(kind string, k [3]string) string {
	mp := "/<0;1>/*"
	switch kind {
	case "wsh":
		return "wsh(sortedmulti(2," + k[0] + mp + "," + k[1] + mp + "," + k[2] + mp + "))"
	case "sh-wsh":
		return "sh(wsh(sortedmulti(2," + k[0] + mp + "," + k[1] + mp + "," + k[2] + mp + ")))"
	case "tr":
		return "tr(" + descriptor.NUMSKey + ",multi_a(2," + k[0] + mp + "," + k[1] + mp + "," + k[2] + mp + "))"
	case "tr-tree":
		return "tr(" + descriptor.NUMSKey + ",{multi_a(2," + k[0] + mp + "," + k[1] + mp + "),{sortedmulti_a(2," + k[0] + mp + "," + k[2] + mp + "),multi_a(2," + k[1] + mp + "," + k[2] + mp + ")}})"
	}
	panic(kind)
}

// newKindFixture is newFixture for any walletKinds entry.
func newKindFixture(t testing.TB, kind string) *fixture {
	f := &fixture{}
	var k [3]string
	for i := range f.keys {
		f.keys[i] = testKeys(t, byte(i+1))
		k[i] = f.keys[i].Public.KeyOrigin()
	}
	body := descriptorBody(kind, k)
	sum, err := descriptor.Checksum(body)
	if err != nil {
		t.Fatal(err)
	}
	if f.desc, err = descriptor.Parse(body+"#"+sum, net, descriptor.RequireChecksum()); err != nil {
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

func slotOf(t testing.TB, d *descriptor.Descriptor, k *testKey) int {
	for i, key := range d.Keys() {
		if key.XPub.String() == k.Public.AccountXPub {
			return i
		}
	}
	t.Fatal("key not in descriptor")
	return -1
}

// fuzzCombineFinalize is the harness of the Combiner and Finalizer fuzz targets: each seed pair
// is added serialized; every pair of inputs that parses is combined, and a combination is
// counted (Signatures) and finalized against fx's wallet. No input may panic; a finalized
// transaction goes to check with the combined PSBT.
func fuzzCombineFinalize(f *testing.F, fx *fixture, seeds [][2]*psbt.Packet, check func(t *testing.T, comb *psbt.Packet, tx *wire.MsgTx)) {
	enc := func(q *psbt.Packet) []byte {
		var b bytes.Buffer
		if err := q.Serialize(&b); err != nil {
			f.Fatal(err)
		}
		return b.Bytes()
	}
	for _, s := range seeds {
		f.Add(enc(s[0]), enc(s[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		qa, err := psbt.NewFromRawBytes(bytes.NewReader(a), false)
		if err != nil {
			return
		}
		qb, err := psbt.NewFromRawBytes(bytes.NewReader(b), false)
		if err != nil {
			return
		}
		comb, err := Combine(qa, qb)
		if err != nil {
			return
		}
		_, _ = Signatures(fx.desc, comb)
		tx, err := Finalize(fx.desc, comb)
		if err != nil {
			return
		}
		check(t, comb, tx)
	})
}
