package signer

import (
	"context"
	"time"

	"github.com/custodyagents/cosigner/nip46/session"
)

// What the remote signer needs from durable storage, in its own records (package nip46/session)
// so that it does not import the store. *store.DB implements all of it.

// Sessions is the durable session state: client sessions, the nostrconnect queue and the
// transports of held requests.
type Sessions interface {
	SessionTable
	NostrConnectQueue
	RequestTransports
}

// SessionTable holds the connect secrets and the sessions they open (NIP-46 connect).
type SessionTable interface {
	// UseConnectSecret spends secret for client and opens its session with the permissions
	// grant returns, keeping info (the client's validated metadata, display only);
	// session.ErrSecretInvalid when the secret is unknown or spent.
	UseConnectSecret(ctx context.Context, secret, client, requested string, info session.ClientInfo, grant session.GrantFunc) (string, error)
	// SessionPerms returns client's granted permissions; ok is false without a session.
	SessionPerms(ctx context.Context, client string) (perms string, ok bool, err error)
	// ConnectSecretUsable reports whether secret would open a session for client (known and
	// unused, or used by client itself), without writing anything.
	ConnectSecretUsable(ctx context.Context, secret, client string) (bool, error)
	ListSessions(ctx context.Context) ([]session.ClientSession, error)
	EndSession(ctx context.Context, client string) error
	// SetSessionRelays replaces client's own relays (nil: ours); session.ErrNoSession.
	SetSessionRelays(ctx context.Context, client string, relays []string) error
	RecordActivity(ctx context.Context, act map[string]session.Activity) error
	AuditSession(ctx context.Context, a session.Audit) error
}

// NostrConnectQueue holds the connect responses to nostrconnect:// clients the operator
// accepted, and their delivery state (session.Connect*).
type NostrConnectQueue interface {
	PendingNostrConnects(ctx context.Context) ([]session.NostrConnect, error)
	// NostrConnectSent records one accepted send; session.ErrNoSession when the row is no
	// longer pending or sent.
	NostrConnectSent(ctx context.Context, client, responseID string, at, next time.Time) error
	ConfirmNostrConnect(ctx context.Context, client string) (bool, error)
	FinishNostrConnect(ctx context.Context, client, state, errMsg string) error
}

// RequestTransports remembers how held requests arrived (session.Transport*, the relay) so
// that their late answers, also after a restart, go the same way.
type RequestTransports interface {
	SaveRequestTransport(ctx context.Context, client, requestID, transport, arrivedOn string) error
	RequestTransport(ctx context.Context, client, requestID string) (transport, arrivedOn string, ok bool, err error)
	DeleteRequestTransport(ctx context.Context, client, requestID string) error
}

// SeenEvents is the durable replay set (satisfied by *store.DB). When the Sessions given to
// NewRemoteSigner also implement it, a request event handled before — even before a restart —
// is dropped as a replay; the in-memory set only covers the process's own life.
type SeenEvents interface {
	// FirstSeenEvent records id at now and reports whether it was not recorded within ttl.
	FirstSeenEvent(ctx context.Context, id string, now time.Time, ttl time.Duration) (bool, error)
}
