package devnet

// btcd.go — the Bitcoin node: start-up, mining, and funding from the
// harness's coinbases.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

const (
	btcdRPCUser = "devnet"
	btcdRPCPass = "devnet"

	// coinbaseMaturity is the number of confirmations a coinbase needs before
	// it can be spent (consensus rule, 100 on every network).
	coinbaseMaturity = 100

	// fundFeeRate is the feerate of Fund transactions in sat/vB.
	fundFeeRate = 5

	// dustLimit: change below this many satoshis is left to the fee.
	dustLimit = 546
)

// harnessKey is the key that btcd's --miningaddr pays to; the harness funds
// wallets by spending its coinbases. It pays to P2PKH so that coinbases are
// spendable whether or not segwit is active yet.
type harnessKey struct {
	priv     *btcec.PrivateKey
	addr     *btcutil.AddressPubKeyHash
	pkScript []byte
}

func newHarnessKey(n *Network) (harnessKey, error) {
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		return harnessKey{}, fmt.Errorf("generating the harness key: %w", err)
	}
	addr, err := btcutil.NewAddressPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	if err != nil {
		return harnessKey{}, err
	}
	pkScript, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return harnessKey{}, err
	}
	return harnessKey{priv: priv, addr: addr, pkScript: pkScript}, nil
}

// startBtcd starts btcd in regtest and connects the RPC client. The port of
// each service must already be chosen.
func (n *Network) startBtcd(ctx context.Context) error {
	dataDir := filepath.Join(n.dir, "btcd")
	args := []string{
		"--regtest",
		"--datadir=" + filepath.Join(dataDir, "data"),
		"--logdir=" + filepath.Join(dataDir, "logs"),
		"--configfile=" + filepath.Join(dataDir, "btcd.conf-unused"),
		"--rpcuser=" + btcdRPCUser,
		"--rpcpass=" + btcdRPCPass,
		fmt.Sprintf("--rpclisten=127.0.0.1:%d", n.btcdRPCPort),
		fmt.Sprintf("--listen=127.0.0.1:%d", n.btcdP2PPort),
		"--notls",
		"--txindex",
		"--nodnsseed",
		"--miningaddr=" + n.key.addr.EncodeAddress(),
		"--debuglevel=info",
	}
	if n.minRelayFeeRate > 0 {
		// sat/vB → BTC/kvB
		args = append(args, fmt.Sprintf("--minrelaytxfee=%.8f", float64(n.minRelayFeeRate)*1000/1e8), "--norelaypriority")
	}
	p, err := startProcess("btcd", n.tools.btcd, args, nil, n.dir, filepath.Join(n.dir, "btcd.log"), n.log)
	if err != nil {
		return err
	}
	n.btcd = p

	rpc, err := rpcclient.New(&rpcclient.ConnConfig{
		Host:                 fmt.Sprintf("127.0.0.1:%d", n.btcdRPCPort),
		User:                 btcdRPCUser,
		Pass:                 btcdRPCPass,
		HTTPPostMode:         true,
		DisableTLS:           true,
		DisableAutoReconnect: true,
	}, nil)
	if err != nil {
		return fmt.Errorf("btcd: rpc client: %w", err)
	}
	n.rpc = rpc

	// Wait until RPC answers.
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, p.exitError()
		}
		_, err := rpc.GetBlockCount()
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("btcd did not answer RPC on 127.0.0.1:%d: %w; last lines of %s:\n%s", n.btcdRPCPort, err, p.logPath, TailFile(p.logPath, 20))
	}
	return nil
}

// Mine mines blocks on btcd with the `generate` RPC (coinbases pay the
// harness key) and waits until ElectrumX has indexed the new tip, so that a
// following Electrum query sees the blocks. It returns the block hashes in
// chain order. blocks must be positive.
func (n *Network) Mine(ctx context.Context, blocks int) ([]chainhash.Hash, error) {
	if blocks <= 0 {
		return nil, fmt.Errorf("devnet: Mine(%d): blocks must be positive", blocks)
	}
	if err := n.checkOpen(); err != nil {
		return nil, err
	}
	hashes, err := n.generate(ctx, blocks)
	if err != nil {
		return nil, err
	}
	if err := n.waitElectrumSynced(ctx); err != nil {
		return hashes, err
	}
	return hashes, nil
}

// generate mines blocks in chunks (btcd mines one `generate` call
// synchronously, so chunks keep each call short) without waiting for ElectrumX.
func (n *Network) generate(ctx context.Context, blocks int) ([]chainhash.Hash, error) {
	n.mineMu.Lock()
	defer n.mineMu.Unlock()
	out := make([]chainhash.Hash, 0, blocks)
	for left := blocks; left > 0; {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		chunk := min(left, 100)
		hs, err := n.rpc.Generate(uint32(chunk))
		if err != nil {
			return out, fmt.Errorf("btcd generate %d: %w", chunk, err)
		}
		for _, h := range hs {
			out = append(out, *h)
		}
		left -= chunk
	}
	return out, nil
}

// Fund pays amount to addr from mature coinbases of the harness key, with
// change back to the harness key and a fee of 5 sat/vB, and submits the
// transaction to btcd. It returns the txid; the transaction is unconfirmed
// until the next Mine. Coinbases mature after 100 blocks; when none is left,
// the error wraps ErrNoFunds. amount must be above the dust limit.
func (n *Network) Fund(ctx context.Context, addr btcutil.Address, amount btcutil.Amount) (chainhash.Hash, error) {
	if err := n.checkOpen(); err != nil {
		return chainhash.Hash{}, err
	}
	if amount <= 0 {
		return chainhash.Hash{}, fmt.Errorf("devnet: Fund: amount %v must be positive", amount)
	}
	if !addr.IsForNet(n.Params()) {
		return chainhash.Hash{}, fmt.Errorf("devnet: Fund: address %s is not a regtest address", addr)
	}
	pkScript, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("devnet: Fund: %w", err)
	}
	tx, err := n.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(int64(amount), pkScript)}, FundOptions{})
	if err != nil {
		return chainhash.Hash{}, err
	}
	n.log.Debug("funded", "addr", addr.EncodeAddress(), "amount", amount, "txid", tx.TxHash())
	return tx.TxHash(), nil
}

// coinbaseAt returns the harness's coinbase output at height when it exists
// on the current chain and is unspent (also in the mempool).
func (n *Network) coinbaseAt(height int64) (wire.OutPoint, btcutil.Amount, bool, error) {
	hash, err := n.rpc.GetBlockHash(height)
	if err != nil {
		return wire.OutPoint{}, 0, false, fmt.Errorf("devnet: getblockhash %d: %w", height, err)
	}
	block, err := n.rpc.GetBlock(hash)
	if err != nil {
		return wire.OutPoint{}, 0, false, fmt.Errorf("devnet: getblock %s: %w", hash, err)
	}
	if len(block.Transactions) == 0 {
		return wire.OutPoint{}, 0, false, nil
	}
	cb := block.Transactions[0]
	for i, out := range cb.TxOut {
		if string(out.PkScript) != string(n.key.pkScript) || out.Value <= 0 {
			continue
		}
		op := wire.OutPoint{Hash: cb.TxHash(), Index: uint32(i)}
		res, err := n.rpc.GetTxOut(&op.Hash, op.Index, true)
		if err != nil {
			var rerr *btcjson.RPCError
			if errors.As(err, &rerr) || strings.Contains(err.Error(), "not found") {
				continue
			}
			return wire.OutPoint{}, 0, false, fmt.Errorf("devnet: gettxout %s: %w", op, err)
		}
		if res == nil {
			continue // spent
		}
		return op, btcutil.Amount(out.Value), true, nil
	}
	return wire.OutPoint{}, 0, false, nil
}

// poll calls check every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
