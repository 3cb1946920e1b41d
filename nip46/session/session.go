// Package session defines the records a NIP-46 remote signer keeps about its clients: sessions,
// their activity, audit notes about them, queued nostrconnect:// connect responses and the
// transport of held requests. The remote signer (package signer) states what it needs from a
// store in these types, and the store (package store) persists them, so that neither imports
// the other. Pure types and constants: no I/O.
package session

import (
	"errors"
	"time"
)

// ErrSecretInvalid means a connect secret is unknown or was already used (by another client, or
// by this client for a session that has since ended).
var ErrSecretInvalid = errors.New("store: connect secret unknown or already used")

// ErrNoSession means the client pubkey has no session (or no queued nostrconnect response).
var ErrNoSession = errors.New("store: no session for this client")

// GrantFunc computes the permissions a session gets from the secret's perms (has = false: the
// secret was created without perms, use the defaults). It runs inside the connect transaction.
type GrantFunc func(secretPerms string, has bool) (granted string, err error)

// ClientSession is one connected NIP-46 client.
type ClientSession struct {
	Client         string // pubkey, hex
	ConnectedAt    time.Time
	Perms          string   // granted, canonical "method[:kind],…"
	RequestedPerms string   // as the client asked in connect (or the nostrconnect URI)
	Metadata       string   // the client metadata as JSON {name,url,image}, a display hint only
	Relays         []string // the client's own relays (nostrconnect); empty: ours
	Name           string   // Info.Name (sessions made before migration 0017: nostrconnect name= only)
	Info           ClientInfo
	LastSeen       time.Time // last request (zero: none recorded yet); flushed every few seconds
	Requests       int64     // requests received since the session began (display only)
}

// ClientInfo is what a client says about itself (NIP-46 "Client metadata": connect's fourth
// param {name, url, image}, or the nostrconnect:// URI's name=, url=, image=), after validation
// (package nip46, ParseClientMetadata). Unauthenticated: shown to people, never used to
// authorize anything.
type ClientInfo struct {
	Name  string
	URL   string
	Image string
	// Note says what the client sent that was dropped and why ("" when nothing was).
	Note string
}

// Activity is what a client did since the last flush: requests received and the time of the
// last one.
type Activity struct {
	Requests int64
	LastSeen time.Time
}

// Audit is one audit-log note about a session: a connect accepted or refused, a method refused
// for lack of permission, a logout, a Nostr event signed.
type Audit struct {
	Client    string // pubkey, hex
	RequestID string
	Method    string
	Decision  string // connected | rejected | signed | logout
	Rule      string // connect_secret | nostrconnect | permissions | ""
	Reason    string
}

// Request transports: how a held request was encrypted, so that its late answer is too.
const (
	TransportNIP44 = "nip44"
	TransportNIP04 = "nip04"
)

// NostrConnect is a client-initiated connection (NIP-46 nostrconnect:// URI) accepted by the
// operator, with the delivery state of its connect response.
type NostrConnect struct {
	Client         string   // client pubkey, hex
	Relays         []string // the client's relays
	Secret         string   // the client's secret, echoed in the connect response
	Perms          string   // granted, canonical
	RequestedPerms string
	Name           string
	Metadata       string // the URI's name/url/image as connect-style metadata JSON, a display hint only
	Info           ClientInfo
	State          string // one of the Connect* states
	Error          string
	CreatedAt      time.Time
	ResponseID     string    // id of the connect response, the same on every re-send ('' before the first)
	Attempts       int       // sends accepted by at least one relay
	SentAt         time.Time // first accepted send (zero: not yet)
	NextAt         time.Time // when the response is re-sent next
}

// Delivery states of a nostrconnect connect response. A response is pending until a relay first
// accepts it, then sent (and re-sent) until the app's first request arrives (confirmed) or the
// re-send deadline passes without one (unconfirmed: the app may never have seen it). failed and
// expired end it without any send.
const (
	ConnectPending     = "pending"
	ConnectSent        = "sent"
	ConnectConfirmed   = "confirmed"
	ConnectUnconfirmed = "unconfirmed"
	ConnectFailed      = "failed"
	ConnectExpired     = "expired"
)
