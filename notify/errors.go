package notify

import "errors"

// Sentinel errors of package notify. Functions wrap them with %w and the detail (which
// recipient, which relay); compare with errors.Is.
var (
	// ErrBadRecipient: a recipient is not an npub (NIP-19) or a 64-character hex x-only public
	// key on secp256k1.
	ErrBadRecipient = errors.New("notify: bad recipient")
	// ErrNoRecipients: New was given no recipient (notifications are off: do not create a DM).
	ErrNoRecipients = errors.New("notify: no recipients")
	// ErrBadSenderKey: the sender's secret key is not 64 hex characters of a valid key.
	ErrBadSenderKey = errors.New("notify: bad sender key")
	// ErrBadText: a message must be valid UTF-8 (NIP-17: plain text) with at least one
	// non-space character.
	ErrBadText = errors.New("notify: bad message text")
	// ErrTooLong: the message is over MaxTextBytes, or its seal would not fit NIP-44's
	// 65,535-byte plaintext limit.
	ErrTooLong = errors.New("notify: message too long")
	// ErrQueueFull: Send found the delivery queue full (the relays are down or slow); the
	// message was not queued.
	ErrQueueFull = errors.New("notify: delivery queue full")
	// ErrClosed: the DM was closed.
	ErrClosed = errors.New("notify: closed")
	// ErrNotDelivered: no relay accepted a gift wrap after every attempt.
	ErrNotDelivered = errors.New("notify: not delivered")
	// ErrBadWrap: an event is not a well-formed NIP-59 gift wrap of a NIP-17 message for us
	// (wrong kind, does not decrypt, bad seal signature, seal and rumor authors differ, …).
	ErrBadWrap = errors.New("notify: bad gift wrap")
)
