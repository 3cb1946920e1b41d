package signer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// The nostrconnect:// flow (NIP-46, "Direct connection initiated by the client"): the operator
// accepts the URI with `cosigner connect`, which writes the session (perms, the client's relays)
// and a queued response into the database; the running remote signer picks the queue up, starts
// listening on the client's relays, and sends the connect response {"id":<random>,
// "result":<the client's secret>} there and on its own relays.

// NostrConnectPoll is how often Run looks for queued nostrconnect responses.
const NostrConnectPoll = time.Second

// NostrConnectTTL is how long a queued response is tried before it is given up as expired (the
// app has long stopped waiting by then).
const NostrConnectTTL = 10 * time.Minute

// PokeNostrConnect makes Run look at the queue now instead of at the next poll (tests, or a
// caller in the same process).
func (s *RemoteSigner) PokeNostrConnect() {
	select {
	case s.nostrConnects <- struct{}{}:
	default:
	}
}

// runNostrConnects sends queued nostrconnect responses until ctx ends (owned by Run).
func (s *RemoteSigner) runNostrConnects(ctx context.Context) {
	t := time.NewTicker(NostrConnectPoll)
	defer t.Stop()
	for {
		s.processNostrConnects(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.nostrConnects:
		}
	}
}

func (s *RemoteSigner) processNostrConnects(ctx context.Context) {
	pending, err := s.sessions.PendingNostrConnects(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("cannot read queued nostrconnect responses", "error", err)
		}
		return
	}
	for _, c := range pending {
		log := s.log.With("client", c.Client, "relays", c.Relays)
		if s.now().Sub(c.CreatedAt) > NostrConnectTTL {
			log.Warn("nostrconnect response expired before any relay accepted it")
			if err := s.sessions.FinishNostrConnect(ctx, c.Client, store.ConnectExpired, "no relay accepted the response in time"); err != nil {
				log.Error("cannot record nostrconnect outcome", "error", err)
			}
			continue
		}
		s.setClientRelays(c.Client, c.Relays)
		ck, err := s.conversationKey(c.Client)
		if err != nil {
			_ = s.sessions.FinishNostrConnect(ctx, c.Client, store.ConnectFailed, "bad client pubkey")
			continue
		}
		idb := make([]byte, 8)
		_, _ = rand.Read(idb)
		resp := wireResponse{ID: hex.EncodeToString(idb), Result: c.Secret}
		if err := s.reply(ctx, transport{client: c.Client, ck: ck}, "", resp); err != nil {
			log.Warn("nostrconnect response not accepted by any relay yet; will retry", "error", err)
			continue
		}
		if err := s.sessions.FinishNostrConnect(ctx, c.Client, store.ConnectSent, ""); err != nil {
			log.Error("cannot record nostrconnect outcome", "error", err)
			continue
		}
		s.audit(ctx, Request{Client: c.Client, ID: resp.ID, Method: "connect"}, "connected", "nostrconnect", "operator accepted a nostrconnect:// URI")
		log.Info("nostrconnect: connect response sent")
	}
}

// AcceptNostrConnect turns a parsed nostrconnect:// URI into the store row that the running
// remote signer answers: the client gets base (the operator's grant; DefaultPerms if empty)
// intersected with the perms the URI asks for (all of base if it asks for none).
// Errors: ErrBadPerms for a malformed base.
func AcceptNostrConnect(u NostrConnectURI, base string) (store.NostrConnect, error) {
	has := base != ""
	granted, err := GrantAtConnect(base, has, u.Perms)
	if err != nil {
		return store.NostrConnect{}, err
	}
	return store.NostrConnect{Client: u.ClientPubKey, Relays: u.Relays, Secret: u.Secret, Perms: granted.String(),
		RequestedPerms: u.Perms, Name: u.Name}, nil
}
