package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/custodyagents/cosigner/internal/synthchain"
)

// TestFromElectrum runs the Electrum path against a local synthetic chain (no network): the
// whole chain is checked from genesis and one entry comes out per whole period ending at least
// margin blocks below the tip, equal to the chain's own checkpoints.
func TestFromElectrum(t *testing.T) {
	c, err := synthchain.New(3*interval+150, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := synthchain.Serve(c)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	list, err := fromElectrum(context.Background(), c.Params, srv.URL(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(list)
	want, _ := json.Marshal(c.Checkpoints(3*interval + 150 - 100))
	if len(list) != 3 || string(got) != string(want) {
		t.Fatalf("checkpoints\n%s\nwant\n%s", got, want)
	}
}
