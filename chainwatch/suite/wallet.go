package suite

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// Wallet is a chainwatch.ScriptSource of P2WPKH scripts at m/branch/index
// (branch 0 receive, 1 change) of a seed, that keeps its private keys so that
// tests can spend. Derived scripts are cached; safe for concurrent use.
type Wallet struct {
	master *hdkeychain.ExtendedKey
	params *chaincfg.Params

	mu    sync.Mutex
	cache map[[2]uint32]*btcec.PrivateKey
}

// NewWallet derives the wallet numbered seed: its BIP-32 master seed is
// SHA-256("chainwatch suite wallet" ‖ seed as 4 bytes big-endian), so every
// number gives another wallet.
func NewWallet(params *chaincfg.Params, seed uint32) (*Wallet, error) {
	h := sha256.New()
	h.Write([]byte("chainwatch suite wallet"))
	h.Write(binary.BigEndian.AppendUint32(nil, seed))
	m, err := hdkeychain.NewMaster(h.Sum(nil), params)
	if err != nil {
		return nil, err
	}
	return &Wallet{master: m, params: params, cache: map[[2]uint32]*btcec.PrivateKey{}}, nil
}

// Branches is 2: receive and change.
func (w *Wallet) Branches() int { return 2 }

// Key is the private key at branch/index.
func (w *Wallet) Key(branch, index uint32) (*btcec.PrivateKey, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k, ok := w.cache[[2]uint32{branch, index}]; ok {
		return k, nil
	}
	b, err := w.master.Derive(branch)
	if err != nil {
		return nil, err
	}
	c, err := b.Derive(index)
	if err != nil {
		return nil, err
	}
	k, err := c.ECPrivKey()
	if err != nil {
		return nil, err
	}
	w.cache[[2]uint32{branch, index}] = k
	return k, nil
}

// PkScript is the P2WPKH scriptPubKey at branch/index.
func (w *Wallet) PkScript(branch, index uint32) ([]byte, error) {
	k, err := w.Key(branch, index)
	if err != nil {
		return nil, err
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), w.params)
	if err != nil {
		return nil, err
	}
	return txscript.PayToAddrScript(addr)
}

// ScriptSet maps the scripts of indexes [0, n) on both branches to their
// branch and index, for NodeTruth.
func (w *Wallet) ScriptSet(n uint32) (map[string]ScriptRef, error) {
	out := make(map[string]ScriptRef, 2*n)
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < n; i++ {
			pk, err := w.PkScript(b, i)
			if err != nil {
				return nil, err
			}
			out[string(pk)] = ScriptRef{Branch: b, Index: i}
		}
	}
	return out, nil
}

// Spend builds and signs a transaction spending the wallet's P2WPKH coins
// ins (their values and scripts given by prevs) to outs. Every input signals
// BIP-125 replaceability.
func (w *Wallet) Spend(ins []wire.OutPoint, prevs []*wire.TxOut, refs []ScriptRef, outs []*wire.TxOut) (*wire.MsgTx, error) {
	if len(ins) != len(prevs) || len(ins) != len(refs) {
		return nil, fmt.Errorf("suite: Spend: %d inputs, %d previous outputs, %d refs", len(ins), len(prevs), len(refs))
	}
	tx := wire.NewMsgTx(2)
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	for i, op := range ins {
		in := wire.NewTxIn(&op, nil, nil)
		in.Sequence = wire.MaxTxInSequenceNum - 2
		tx.AddTxIn(in)
		fetcher.AddPrevOut(op, prevs[i])
	}
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	sigHashes := txscript.NewTxSigHashes(tx, fetcher)
	for i := range ins {
		k, err := w.Key(refs[i].Branch, refs[i].Index)
		if err != nil {
			return nil, err
		}
		wit, err := txscript.WitnessSignature(tx, sigHashes, i, prevs[i].Value, prevs[i].PkScript, txscript.SigHashAll, k, true)
		if err != nil {
			return nil, fmt.Errorf("suite: signing input %d: %w", i, err)
		}
		tx.TxIn[i].Witness = wit
	}
	return tx, nil
}
