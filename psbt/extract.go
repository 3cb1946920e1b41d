package psbt

// BIP-174 Transaction Extractor role
// (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki#transaction-extractor): the
// network transaction of a finalized PSBT, run through txscript's script engine before anyone
// broadcasts it.

import (
	"fmt"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// extract takes the network transaction out of q, whose inputs Finalize finalized, and
// verifies every input's scripts against ins (verifyScripts). Errors: ErrFinalize.
func extract(q *psbt.Packet, ins []resolvedInput) (*wire.MsgTx, error) {
	tx, err := psbt.Extract(q)
	if err != nil {
		return nil, fmt.Errorf("%w: extract: %v", ErrFinalize, err)
	}
	if err := verifyScripts(tx, ins); err != nil {
		return nil, err
	}
	return tx, nil
}

// verifyScripts runs every input of tx through txscript's engine (standard verify flags).
func verifyScripts(tx *wire.MsgTx, ins []resolvedInput) error {
	prev := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		prev.AddPrevOut(in.PreviousOutPoint, ins[i].prevOut)
	}
	hashes := txscript.NewTxSigHashes(tx, prev)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(ins[i].prevOut.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, ins[i].prevOut.Value, prev)
		if err == nil {
			err = vm.Execute()
		}
		if err != nil {
			return fmt.Errorf("%w: input %d does not verify: %v", ErrFinalize, i, err)
		}
	}
	return nil
}
