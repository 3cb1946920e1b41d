package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/scenario"
)

// TestOutboundSweepTaproot is the happy sweep of TestOutboundSweep on a taproot wallet,
// tr(NUMS,multi_a(2,A,B,C)): A's automation builds the PSBT with the BIP-371 fields, signs its
// script-path share, B checks and signs its share under its own policy over NIP-46, A combines,
// finalizes the BIP-342 witness and broadcasts, and btcd mines the sweep to the cold vault.
func TestOutboundSweepTaproot(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, stop := startPair(ctx, t, scenario.PairOptions{Wallet: "tr"})
	defer stop()
	if p.Descriptor.Type() != descriptor.P2TR {
		t.Fatalf("pair wallet is %s, want tr", p.Descriptor.Type())
	}
	const amount = btcutil.Amount(20_000_000)
	op := deposit(ctx, t, p, amount, 0)
	pr := confirmSweep(ctx, t, p, op)
	checkSwept(ctx, t, p, pr, op, amount)
	if len(pr.Cosigners) != 1 || pr.Cosigners[0].State != "signed" {
		t.Fatalf("co-signers of %s: %+v, want B signed", pr.ID, pr.Cosigners)
	}
	// The sweep spent the deposit through the script path: a multi_a witness of 3 keys
	// (2 signatures, 1 empty), the leaf script and the control block.
	h, _ := chainhash.NewHashFromStr(pr.TxID)
	tx, err := p.Net.RPC().GetRawTransaction(h)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range tx.MsgTx().TxIn {
		w := in.Witness
		if len(w) != 5 || len(w[3]) == 0 || len(w[4]) != 33 {
			t.Fatalf("input %d witness has %d items, want 3 key slots, leaf script, control block", i, len(w))
		}
		sigs := 0
		for _, item := range w[:3] {
			if len(item) == 64 {
				sigs++
			}
		}
		if sigs != 2 {
			t.Fatalf("input %d: %d signatures in the witness, want 2", i, sigs)
		}
	}
}
