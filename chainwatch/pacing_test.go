package chainwatch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// TestPacer: no throttling costs nothing; each throttling answer halves the batch and doubles
// the delay (bounded); pacerRecoverAfter good batches undo one step; only ElectrumX's
// throttling errors count.
func TestPacer(t *testing.T) {
	p := &pacer{}
	for range 100 {
		p.observe(false)
	}
	if d, sh := p.snapshot(); d != 0 || sh != 0 || p.size(100) != 100 {
		t.Fatalf("unthrottled: delay %v shift %d size %d", d, sh, p.size(100))
	}
	p.observe(true)
	if d, _ := p.snapshot(); d != pacerStartDelay || p.size(100) != 50 {
		t.Fatalf("after one throttle: delay %v size %d", d, p.size(100))
	}
	p.observe(true)
	if d, _ := p.snapshot(); d != 2*pacerStartDelay || p.size(100) != 25 || p.size(50) != 12 {
		t.Fatalf("after two: delay %v size %d/%d", d, p.size(100), p.size(50))
	}
	for range 30 {
		p.observe(true)
	}
	if d, _ := p.snapshot(); d != pacerMaxDelay || p.size(100) != pacerMinBatch || p.size(3) != 3 {
		t.Fatalf("bounds: delay %v size %d", d, p.size(100))
	}
	p = &pacer{}
	p.observe(true)
	p.observe(true)
	for range pacerRecoverAfter - 1 {
		p.observe(false)
	}
	if p.size(100) != 25 {
		t.Fatal("recovered before pacerRecoverAfter good batches")
	}
	p.observe(false)
	if d, _ := p.snapshot(); d != 2*pacerStartDelay*3/4 || p.size(100) != 50 {
		t.Fatalf("one recovery step: delay %v size %d", d, p.size(100))
	}
	for range 40 * pacerRecoverAfter {
		p.observe(false)
	}
	if d, sh := p.snapshot(); d != 0 || sh != 0 {
		t.Fatalf("full recovery: delay %v shift %d", d, sh)
	}

	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("x: %w", electrum.ErrExcessiveResourceUsage), true},
		{electrum.ErrServerBusy, true},
		{electrum.ErrHistoryTooLarge, false},
		{errors.New("excessive"), false},
	} {
		if got := batchThrottled(nil, []*electrum.Call{{}, {Err: tc.err}}); got != tc.want {
			t.Errorf("call error %v: throttled %v", tc.err, got)
		}
		if got := batchThrottled(tc.err, nil); got != tc.want {
			t.Errorf("batch error %v: throttled %v", tc.err, got)
		}
	}

	p = &pacer{delay: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel: %v", err)
	}
}
