package relaypool

import (
	"context"
	"slices"
	"testing"
)

func TestUntil(t *testing.T) {
	ch := make(chan int, 3)
	ch <- 1
	ch <- 2
	close(ch)
	if got := slices.Collect(Until(context.Background(), ch)); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("closed channel: %v", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	open := make(chan int) // never sent on: only ctx can end the loop
	if got := slices.Collect(Until(ctx, open)); len(got) != 0 {
		t.Fatalf("cancelled: %v", got)
	}

	ch = make(chan int, 3)
	ch <- 1
	ch <- 2
	ch <- 3
	var got []int
	for v := range Until(context.Background(), ch) {
		got = append(got, v)
		if v == 2 {
			break
		}
	}
	if !slices.Equal(got, []int{1, 2}) || len(ch) != 1 {
		t.Fatalf("break: %v, %d left", got, len(ch))
	}
}
