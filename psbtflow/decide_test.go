package psbtflow

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// TestDecideWritesWhatSignPSBTWrites: Decide (a decoded PSBT, as the outbound engine gives it)
// and SignPSBT (the same PSBT as base64, as a NIP-46 client sends it) decide the same way and
// leave the same sign_requests row, audit entry and ledger reservation — signed, denied, and
// answered again from the store — and Decide does not modify the PSBT it is given.
func TestDecideWritesWhatSignPSBTWrites(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pol, err := policy.Parse("p.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: "+client+"\nlimits:\n  max_per_tx: 60000 sat\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	open := func(name string) (*Service, *store.DB) {
		db, err := store.Open(ctx, filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		svc, err := NewService(f.desc, f.keys[1], f.chain, func() *policy.Policy { return pol }, db, quiet, WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		return svc, db
	}
	inbound, inDB := open("in.db")
	outbound, outDB := open("out.db")
	op := f.addCoin(t, 0, 1, 100_000)
	small := f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	big := f.buildPSBT(t, []wire.OutPoint{op}, 70_000, 29_000, 2)
	rows := func(db *store.DB, id string) string {
		t.Helper()
		r, ok, err := db.SignRequestRow(ctx, client, id)
		if err != nil || !ok {
			t.Fatalf("request %s: %v %v", id, ok, err)
		}
		log, err := db.AuditLog(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i := range log {
			log[i].At = time.Time{}
		}
		res, _, err := db.LedgerEntry(ctx, r.UnsignedTxID)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v\n%+v\n%+v", r, log, res)
	}
	for _, c := range []struct {
		id      string
		p       *btcpsbt.Packet
		refused bool
	}{{"1", small, false}, {"2", big, true}, {"1", small, false}} {
		text, _ := psbt.Encode(c.p, psbt.Base64)
		res, inErr := inbound.SignPSBT(ctx, nip46.Call{Client: client, ID: c.id, Method: "sign_psbt", Params: []string{text}})
		before, _ := psbt.Encode(c.p, psbt.Base64)
		got, outErr := outbound.Decide(ctx, client, c.id, c.p)
		if after, _ := psbt.Encode(c.p, psbt.Base64); after != before {
			t.Fatalf("request %s: Decide modified the PSBT it was given", c.id)
		}
		if fmt.Sprint(inErr) != fmt.Sprint(outErr) || (inErr != nil) != c.refused {
			t.Fatalf("request %s: SignPSBT error %v, Decide error %v", c.id, inErr, outErr)
		}
		if !c.refused {
			if signed, _ := psbt.Encode(got, psbt.Base64); signed != res {
				t.Fatalf("request %s: Decide signed otherwise than SignPSBT", c.id)
			}
		}
		if in, out := rows(inDB, c.id), rows(outDB, c.id); in != out {
			t.Fatalf("request %s: rows differ\nSignPSBT: %s\nDecide:   %s", c.id, in, out)
		}
	}
}
