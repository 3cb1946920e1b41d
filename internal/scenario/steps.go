package scenario

import (
	"context"
	"strconv"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/chainwatch"
)

// Built is what bdkwallet.py build answers: a PSBT signed by key B, not finalized.
type Built struct {
	PSBT    string `json:"psbt"`
	Fee     int64  `json:"fee"`
	TxID    string `json:"txid"`
	Outputs []struct {
		Address  string `json:"address"`
		Amount   int64  `json:"amount"`
		IsChange bool   `json:"is_change"`
	} `json:"outputs"`
}

// Finalized is what bdkwallet.py finalize answers after broadcasting.
type Finalized struct {
	TxID  string `json:"txid"`
	Fee   int64  `json:"fee"`
	VSize int64  `json:"vsize"`
}

// Balance is what bdkwallet.py balance answers.
type Balance struct {
	Confirmed   int64 `json:"confirmed"`
	Unconfirmed int64 `json:"unconfirmed"`
}

// BuildPayment has BDK build a payment of amount to addr at feerate (sat/vB) from the wallet
// and sign it with key B.
func (e *Env) BuildPayment(ctx context.Context, addr btcutil.Address, amount btcutil.Amount, feerate int) (Built, error) {
	var b Built
	args := append([]string{"build"}, e.WalletArgs()...)
	args = append(args, "--to", addr.EncodeAddress(), "--amount", strconv.FormatInt(int64(amount), 10), "--feerate", strconv.Itoa(feerate))
	err := e.BDKJSON(ctx, &b, args...)
	return b, err
}

// Finalize has BDK finalize the co-signed PSBT (2 of 3 signatures), extract and broadcast it
// through the Electrum server.
func (e *Env) Finalize(ctx context.Context, psbtBase64 string) (Finalized, error) {
	var f Finalized
	args := append([]string{"finalize"}, e.WalletArgs()...)
	err := e.BDKJSON(ctx, &f, append(args, "--psbt", psbtBase64)...)
	return f, err
}

// BDKBalance asks BDK for the wallet's balance through the Electrum server.
func (e *Env) BDKBalance(ctx context.Context) (Balance, error) {
	var b Balance
	err := e.BDKJSON(ctx, &b, append([]string{"balance"}, e.WalletArgs()...)...)
	return b, err
}

// ExternalAddress is a fresh P2WPKH address outside the wallet (somebody being paid).
func (e *Env) ExternalAddress() (btcutil.Address, error) { return NewExternalAddress(e.Net.Params()) }

// NewExternalAddress is a fresh P2WPKH address on net, of a key nobody keeps.
func NewExternalAddress(net *chaincfg.Params) (btcutil.Address, error) {
	pk, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	return btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pk.PubKey().SerializeCompressed()), net)
}

// FundConfirmed pays amounts[i] to the wallet's receive address at index i, mines one block and
// waits (up to a minute) until the cosigner's /status shows the sum of amounts confirmed; it
// suits a wallet with no other confirmed coins. It returns the funding txids in index order.
func (e *Env) FundConfirmed(ctx context.Context, amounts ...btcutil.Amount) ([]string, error) {
	txids := make([]string, 0, len(amounts))
	var total btcutil.Amount
	for i, amount := range amounts {
		txid, _, err := e.Fund(ctx, uint32(i), amount)
		if err != nil {
			return txids, err
		}
		txids = append(txids, txid)
		total += amount
	}
	if _, err := e.Net.Mine(ctx, 1); err != nil {
		return txids, err
	}
	if _, err := e.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool { return s.Confirmed == total }); err != nil {
		return txids, err
	}
	return txids, nil
}
