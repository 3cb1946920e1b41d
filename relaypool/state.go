package relaypool

// state.go — the state of one relay, as Health reports it.

import "fmt"

// State is where a relay connection stands.
type State int

const (
	// StateIdle: not connected and not needed yet (before first use, or an extra relay of
	// PublishTo retired when idle), or the Pool is closed.
	StateIdle State = iota
	// StateConnecting: a WebSocket dial (and the NIP-11 fetch before it) is in flight.
	StateConnecting
	// StateConnected: the WebSocket is up (and authenticated, if the relay asked for NIP-42 AUTH).
	StateConnected
	// StateBackingOff: the last attempt failed or the connection was lost; the next dial waits
	// until RelayHealth.RetryAt (Options.MinBackoff growing ×1.7 up to MaxBackoff, ±20% jitter).
	StateBackingOff
	// StateAuthRequired: connected, but the relay refuses us until we authenticate (NIP-42) and
	// we could not: no Options.AuthSigner, or the relay refused our AUTH.
	StateAuthRequired
	// StateFailed: backing off after failAfter or more consecutive failures; still retried,
	// every MaxBackoff at most.
	StateFailed
)

// failAfter is the number of consecutive failures after which a relay is reported failed.
const failAfter = 5

var stateNames = [...]string{"idle", "connecting", "connected", "backing-off", "auth-required", "failed"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText gives the state's name (for JSON health output).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name (as `cosigner status` reads the daemon's /healthz); an
// unknown name is an error.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("relaypool: unknown relay state %q", b)
}

// failedState is the state after failures consecutive failures (1 or more).
func failedState(failures int) State {
	if failures >= failAfter {
		return StateFailed
	}
	return StateBackingOff
}
