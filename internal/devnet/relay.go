package devnet

// relay.go — the Nostr relays: nostr-rs-relay (nostrrsrelay.go) and node running
// internal/devnet/node/relay.mjs (npm @nostr-relay/core with an SQLite event store behind a ws
// server).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// relayState is one relay slot: its port stays fixed across StopRelay and
// StartRelay, and so does its event database.
type relayState struct {
	port     int
	software RelaySoftware
	proc     *process // nil while stopped
}

// startRelay starts relay i on its port and waits for a REQ/EOSE round trip.
func (n *Network) startRelay(ctx context.Context, i int) error {
	r := &n.relays[i]
	name := fmt.Sprintf("relay-%d", i)
	p, err := n.startRelayProcess(i)
	if err != nil {
		return err
	}
	r.proc = p
	url := relayURL(r.port)
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, p.exitError()
		}
		err := relayRoundTrip(ctx, url)
		if err != nil {
			n.log.Debug("relay not ready", "relay", i, "err", err)
		}
		return err == nil, nil
	})
	if err != nil {
		if p.exited() {
			return err
		}
		return fmt.Errorf("%s on %s: %w; last lines of %s:\n%s", name, url, err, p.logPath, TailFile(p.logPath, 20))
	}
	return nil
}

func relayURL(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d", port) }

// relayRoundTrip opens a WebSocket to url, sends a REQ (NIP-01) and waits
// for its EOSE.
func relayRoundTrip(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	var rd io.Reader = conn
	if br != nil {
		rd = br
		defer ws.PutReader(br)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{rd, conn}
	req, _ := json.Marshal([]any{"REQ", "devnet-health", map[string]any{"kinds": []int{24133}, "limit": 1}})
	if err := wsutil.WriteClientText(conn, req); err != nil {
		return err
	}
	for {
		msg, err := wsutil.ReadServerText(rw)
		if err != nil {
			return err
		}
		var frame []json.RawMessage
		if json.Unmarshal(msg, &frame) != nil || len(frame) < 2 {
			continue
		}
		var typ, sub string
		_ = json.Unmarshal(frame[0], &typ)
		_ = json.Unmarshal(frame[1], &sub)
		if typ == "EOSE" && sub == "devnet-health" {
			closeMsg, _ := json.Marshal([]any{"CLOSE", "devnet-health"})
			_ = wsutil.WriteClientText(conn, closeMsg)
			return nil
		}
	}
}

// lockRelay takes relayMu for op on relay i and returns it with the unlock function; it fails
// (unlocked) if the network is closed or i is out of range.
func (n *Network) lockRelay(op string, i int) (*relayState, func(), error) {
	if err := n.checkOpen(); err != nil {
		return nil, nil, err
	}
	n.relayMu.Lock()
	if err := n.checkOpen(); err != nil { // Close may have run meanwhile
		n.relayMu.Unlock()
		return nil, nil, err
	}
	if i < 0 || i >= len(n.relays) {
		n.relayMu.Unlock()
		return nil, nil, fmt.Errorf("devnet: %s(%d): have relays 0..%d", op, i, len(n.relays)-1)
	}
	return &n.relays[i], n.relayMu.Unlock, nil
}

// StopRelay stops relay i (0-based) with SIGTERM, as a relay outage would
// look to clients: their connections drop. Its port and stored events are
// kept for StartRelay. Stopping a stopped relay is a no-op.
func (n *Network) StopRelay(i int) error {
	r, unlock, err := n.lockRelay("StopRelay", i)
	if err != nil {
		return err
	}
	defer unlock()
	if r.proc == nil {
		return nil
	}
	err = r.proc.stop(5 * time.Second)
	r.proc = nil
	if err != nil {
		return fmt.Errorf("devnet: StopRelay(%d): %w", i, err)
	}
	n.log.Info("relay stopped", "relay", i, "url", relayURL(r.port))
	return nil
}

// StartRelay starts relay i (0-based) again on the same port after StopRelay
// and waits up to 30 s until it answers a REQ with EOSE. Starting a running
// relay is a no-op. If the port was taken meanwhile, the error says so.
func (n *Network) StartRelay(i int) error {
	r, unlock, err := n.lockRelay("StartRelay", i)
	if err != nil {
		return err
	}
	defer unlock()
	if r.proc != nil && !r.proc.exited() {
		return nil
	}
	if _, err := pickPort(fmt.Sprintf("relay-%d", i), r.port); err != nil {
		return fmt.Errorf("devnet: StartRelay(%d): %w", i, err)
	}
	ctx, cancel := context.WithTimeout(n.life, 30*time.Second)
	defer cancel()
	if err := n.startRelay(ctx, i); err != nil {
		if r.proc != nil {
			_ = r.proc.stop(2 * time.Second)
			r.proc = nil
		}
		return fmt.Errorf("devnet: StartRelay(%d): %w", i, err)
	}
	n.log.Info("relay started", "relay", i, "url", relayURL(r.port))
	return nil
}
