package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/relaypool"
)

func TestPrintRelays(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	relays := []relaypool.RelayHealth{
		{URL: "wss://relay.one", State: relaypool.StateConnected, Connected: true, Since: now.Add(-time.Hour),
			Published: 12, PublishFailed: 1, LastOKAt: now.Add(-5 * time.Second), LastOKLatency: 42 * time.Millisecond,
			EventsReceived: 30, LastEventAt: now.Add(-10 * time.Second), AuthPubKey: "ab", Limits: relaypool.Limits{MaxMessageLength: 65536}},
		{URL: "wss://relay.two", State: relaypool.StateBackingOff, Since: now.Add(-time.Minute), Failures: 3,
			RetryAt: now.Add(4 * time.Second), LastError: "dial tcp: connection refused", EventsDropped: 2},
		{URL: "wss://client.relay", Extra: true, State: relaypool.StateIdle, Since: now},
	}
	var b bytes.Buffer
	printRelays(&b, relays, now)
	want := `relays       1 of 3 connected
  wss://relay.one                      connected     since 1h0m0s ago; published 12, failed 1, last OK 5s ago in 42ms; events 30 (last 10s ago); authenticated (NIP-42); max message 65536 B
  wss://relay.two                      backing-off   since 1m0s ago, 3 failures, retry in 4s; published 0, failed 0; events 0 (last never), 2 dropped as invalid; last error: dial tcp: connection refused
  wss://client.relay (client's)        idle          since 0s ago; published 0, failed 0; events 0 (last never)
`
	if got := b.String(); got != want {
		t.Fatalf("printRelays:\n%s\nwant:\n%s", got, want)
	}
}
