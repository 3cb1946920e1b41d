package relaypool

// ephemeral.go — relays that never acknowledge ephemeral events.
//
// NIP-01 asks a relay to answer every EVENT with an OK, but some relays in wide use send none
// for ephemeral events (kinds 20000–29999, such as NIP-46's 24133, which they relay to live
// subscribers and never store): nostr-rs-relay before 0.9.0 is one (its commit "send OK message
// for ephemeral events" is first in 0.9.0). Waiting for that OK would hold every publish for
// Options.PublishTimeout and retry it in the background for Options.PublishRetry, sending the
// same event again and again. So the Pool marks such a relay and, while it is marked, counts an
// ephemeral event sent to it as delivered but unconfirmed (PublishResult.Unconfirmed):
//
//   - A relay is marked when its NIP-11 document names nostr-rs-relay below 0.9.0, or when an
//     ephemeral event got no OK within Options.PublishTimeout while the connection stayed up
//     and answered a WebSocket ping sent after that event (the relay has read the event: the
//     stream is ordered) — unless the relay has ever answered an ephemeral event with an OK
//     (true or false): then its silence is a failure (ErrNoOK), retried as any other.
//   - While marked, an ephemeral event sent to it is reported as soon as it is written to the
//     connection; the Pool still listens for an OK for Options.PublishTimeout. It is not sent
//     again (resending cannot make it more certain), unless the connection is lost.
//   - An OK true (or "duplicate:") for an ephemeral event clears the mark: the relay is then
//     waited for like any other.
//   - The quorum counts OKs only: an unconfirmed relay never makes Publish return earlier, and
//     never makes it wait (its answer comes as soon as the event is written). Published counts
//     unconfirmed relays as delivered, so a pool whose only relay is such a relay still
//     publishes.

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// errUnconfirmed is publishOnce's outcome for an ephemeral event sent to a relay that does not
// acknowledge ephemeral events: delivered, unconfirmed, not to be retried.
var errUnconfirmed = errors.New("relaypool: sent; the relay does not acknowledge ephemeral events")

// isEphemeral reports whether kind is an ephemeral kind (NIP-01: 20000 <= kind < 30000).
func isEphemeral(kind int) bool { return 20000 <= kind && kind < 30000 }

// ephemeralUnackedBySoftware reports whether a relay's NIP-11 software and version name a
// release known to send no OK for ephemeral events: nostr-rs-relay before 0.9.0.
func ephemeralUnackedBySoftware(software, version string) bool {
	if !strings.Contains(strings.ToLower(software), "nostr-rs-relay") {
		return false
	}
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(version), "v"), ".", 3)
	if len(parts) < 2 {
		return false // unknown version: learn from its behaviour instead
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major == 0 && minor < 9
}

// markEphemeralUnacked records that the relay does not acknowledge ephemeral events, and why.
// learned: the reason is the relay's silence, which does not mark a relay that has answered an
// ephemeral event before; markEphemeralUnacked then reports false.
func (r *relay) markEphemeralUnacked(why string, learned bool) bool {
	r.mu.Lock()
	if learned && r.ephemeralAnswered {
		r.mu.Unlock()
		return false
	}
	was := r.ephemeralUnacked
	r.ephemeralUnacked = true
	r.mu.Unlock()
	if !was {
		r.pool.log.Info("relay does not acknowledge ephemeral events; counting them as delivered but unconfirmed", "relay", r.url, "why", why)
	}
	return true
}

// ephemeralOK records the relay's OK for an ephemeral event: the relay answers those, and an
// OK true (accepted) also clears the mark.
func (r *relay) ephemeralOK(accepted bool) {
	r.mu.Lock()
	r.ephemeralAnswered = true
	was := r.ephemeralUnacked
	if accepted {
		r.ephemeralUnacked = false
	}
	r.mu.Unlock()
	if was && accepted {
		r.pool.log.Info("relay acknowledged an ephemeral event; waiting for its OKs again", "relay", r.url)
	}
}

func (r *relay) isEphemeralUnacked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ephemeralUnacked
}

// alive sends a WebSocket ping on c and reports whether the pong came within the keepalive
// timeout. A pong proves the relay read everything sent before the ping.
func (c *conn) alive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, c.relay.pool.keepalive.timeout)
	defer cancel()
	return c.ws.Ping(ctx) == nil
}
