package relaypool

import "errors"

// Errors returned by the Pool, in PublishResult.Err, or recorded as a relay's RelayHealth.LastError.
var (
	// ErrNoRelays is returned by New when the relay list is empty.
	ErrNoRelays = errors.New("relaypool: no relays configured")
	// ErrBadRelayURL means a relay URL is not a ws:// or wss:// URL with a host.
	ErrBadRelayURL = errors.New("relaypool: relay URL is not a ws:// or wss:// URL")
	// ErrTooManyRelays is PublishTo's result for an extra relay when Options.ExtraRelayLimit
	// relays outside the pool are already in use.
	ErrTooManyRelays = errors.New("relaypool: too many relays outside the pool in use")
	// ErrIdle ends the connection to a relay outside the pool that PublishTo has not used for
	// Options.ExtraRelayIdle.
	ErrIdle = errors.New("relaypool: idle relay outside the pool disconnected")
	// ErrClosed is returned for work asked of a Pool after Close.
	ErrClosed = errors.New("relaypool: pool closed")
	// ErrRejected is a relay's ["OK", <id>, false, <reason>] answer (NIP-01); the error text
	// carries the reason (for example "blocked: …", "invalid: …", "rate-limited: …").
	ErrRejected = errors.New("relaypool: relay rejected the event")
	// ErrNoOK means the relay did not answer a published event with OK within
	// Options.PublishTimeout.
	ErrNoOK = errors.New("relaypool: no OK from relay in time")
	// ErrConnectionLost means the relay connection ended (dropped by the relay or the network,
	// a failed write, or no pong to a keepalive ping).
	ErrConnectionLost = errors.New("relaypool: relay connection lost")
	// ErrMessageTooLarge means the relay sent a message over the size bound (512 KiB);
	// the connection is dropped and dialed again later.
	ErrMessageTooLarge = errors.New("relaypool: relay message too large")
	// ErrPending is Publish's result for a relay that had not answered when the quorum was
	// reached (or the caller's ctx ended); the Pool goes on trying it in the background.
	ErrPending = errors.New("relaypool: no answer yet; still publishing in the background")
	// ErrBackingOff means the relay is down and its next connection attempt is later than the
	// publish could wait (see Options.MinBackoff); the error text gives the last failure.
	ErrBackingOff = errors.New("relaypool: relay down, backing off")
	// ErrRelayLimit means the event or subscription exceeds a limit the relay announces in its
	// NIP-11 information document (limitation.max_message_length, max_content_length,
	// max_event_tags); it was not sent.
	ErrRelayLimit = errors.New("relaypool: over the relay's NIP-11 limit")
	// ErrAuthRequired means the relay asked for NIP-42 AUTH ("auth-required: …") and the Pool
	// has no Options.AuthSigner, or the relay still refused after a successful AUTH.
	ErrAuthRequired = errors.New("relaypool: relay requires NIP-42 authentication")
	// ErrAuthFailed means the NIP-42 AUTH event could not be signed, or the relay answered it
	// with OK false (the reason follows) or not at all.
	ErrAuthFailed = errors.New("relaypool: NIP-42 authentication failed")
	// ErrSubscriptionClosed is a relay's ["CLOSED", <subscription id>, <reason>] (NIP-01); the
	// subscription is requested again after backoff.
	ErrSubscriptionClosed = errors.New("relaypool: relay closed the subscription")

	errEncoding = errors.New("relaypool: encoding the message")

	// Reasons an incoming event is dropped (see checkEvent).
	ErrFilterMismatch = errors.New("relaypool: event does not match the subscription's filter")
	ErrBadEventID     = errors.New("relaypool: event id is not the hash of the event")
	ErrBadSignature   = errors.New("relaypool: event signature is invalid")
)
