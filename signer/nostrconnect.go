package signer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
)

// The nostrconnect:// flow (NIP-46, "Direct connection initiated by the client"): the operator
// accepts the URI with `cosigner connect`, which writes the session (perms, the client's relays)
// and a queued response into the database; the running remote signer picks the queue up, starts
// listening on the client's relays, and sends the connect response {"id":<random>,
// "result":<the client's secret>} there and on its own relays.
//
// Kind 24133 events are ephemeral: a relay forwards them only to subscriptions live at that
// moment. So the response is re-sent, with the same id, after NostrConnectResendMin, doubling up
// to NostrConnectResendMax, until the app's first request arrives (state confirmed) or
// NostrConnectResendFor has passed since the first send (state unconfirmed: the app may never
// have seen it; the session stays, the operator can check the app). Only then is the client's
// secret forgotten.

// NostrConnectPoll is how often Run looks for queued nostrconnect responses.
const NostrConnectPoll = time.Second

// NostrConnectTTL is how long a queued response is tried before it is given up as expired (the
// app has long stopped waiting by then) when no relay accepts it.
const NostrConnectTTL = 10 * time.Minute

// Re-sending of an accepted nostrconnect connect response (see above).
const (
	NostrConnectResendMin = time.Second
	NostrConnectResendMax = 30 * time.Second
	NostrConnectResendFor = 2 * time.Minute
)

// PokeNostrConnect makes Run look at the queue now instead of at the next poll (tests, or a
// caller in the same process).
func (s *RemoteSigner) PokeNostrConnect() {
	select {
	case s.nostrConnects <- struct{}{}:
	default:
	}
}

// runNostrConnects sends queued nostrconnect responses until ctx ends, and does the remote
// signer's housekeeping on the same beat: idle client-relay pools, activity counts, sessions
// that are gone (owned by Run).
func (s *RemoteSigner) runNostrConnects(ctx context.Context) {
	t := time.NewTicker(NostrConnectPoll)
	defer t.Stop()
	var flushed, synced time.Time
	for {
		s.processNostrConnects(ctx)
		if now := s.now(); now.Sub(flushed) >= activityFlushEvery {
			flushed = now
			s.flushActivity(ctx)
			s.closeIdle()
			s.logDrops(now)
		}
		if now := s.now(); now.Sub(synced) >= sessionSyncEvery {
			synced = now
			s.syncSessions(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.nostrConnects:
		}
	}
}

// resendDelay is the wait after the n-th accepted send (n >= 1).
func resendDelay(n int) time.Duration {
	d := NostrConnectResendMin
	for i := 1; i < n && d < NostrConnectResendMax; i++ {
		d *= 2
	}
	return min(d, NostrConnectResendMax)
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
		now := s.now()
		finish := func(state, msg string) {
			s.clientMu.Lock()
			delete(s.awaiting, c.Client)
			s.clientMu.Unlock()
			if err := s.sessions.FinishNostrConnect(ctx, c.Client, state, msg); err != nil {
				log.Error("cannot record nostrconnect outcome", "error", err)
			}
		}
		switch {
		case c.State == session.ConnectPending && now.Sub(c.CreatedAt) > NostrConnectTTL:
			log.Warn("nostrconnect response expired before any relay accepted it")
			finish(session.ConnectExpired, "no relay accepted the response in time")
			continue
		case c.State == session.ConnectSent && now.Sub(c.SentAt) > NostrConnectResendFor:
			msg := fmt.Sprintf("the app sent no request within %s of the connect response (%d sends)", NostrConnectResendFor, c.Attempts)
			log.Warn("nostrconnect: " + msg)
			finish(session.ConnectUnconfirmed, msg)
			continue
		case c.State == session.ConnectSent && now.Before(c.NextAt):
			s.clientMu.Lock()
			s.awaiting[c.Client] = true
			s.clientMu.Unlock()
			continue
		}
		s.setClientRelays(c.Client, c.Relays)
		ck, err := s.conversationKey(c.Client)
		if err != nil {
			finish(session.ConnectFailed, "bad client pubkey")
			continue
		}
		id := c.ResponseID
		if id == "" {
			idb := make([]byte, 8)
			_, _ = rand.Read(idb)
			id = hex.EncodeToString(idb)
		}
		// Awaiting before sending: the app may answer before the send is recorded.
		s.clientMu.Lock()
		s.awaiting[c.Client] = true
		s.clientMu.Unlock()
		resp := nip46.Response{ID: id, Result: c.Secret}
		if err := s.reply(ctx, transport{client: c.Client, ck: ck}, "", resp); err != nil {
			log.Warn("nostrconnect response not accepted by any relay yet; will retry", "error", err)
			continue
		}
		if err := s.sessions.NostrConnectSent(ctx, c.Client, id, now, now.Add(resendDelay(c.Attempts+1))); err != nil {
			if !errors.Is(err, session.ErrNoSession) { // confirmed meanwhile: nothing to record
				log.Error("cannot record nostrconnect send", "error", err)
			}
			continue
		}
		if c.State == session.ConnectPending {
			s.audit(ctx, nip46.Call{Client: c.Client, ID: id, Method: nip46.MethodConnect}, "connected", "nostrconnect", "operator accepted a nostrconnect:// URI; "+describeInfo(c.Info))
			log.Info("nostrconnect: connect response sent; re-sending until the app's first request", "for", NostrConnectResendFor)
		} else {
			log.Debug("nostrconnect: connect response re-sent", "attempt", c.Attempts+1)
		}
	}
}

// AcceptNostrConnect turns a parsed nostrconnect:// URI into the store row that the running
// remote signer answers: the client gets base (the operator's grant; DefaultPerms if empty)
// intersected with the perms the URI asks for (all of base if it asks for none); the URI's
// name, url and image are validated (nip46.ClientMetadata.Validate) and kept as the session's
// metadata: display hints, never used to authorize. What was dropped is in the row's
// Info.Note. Errors: ErrBadPerms for a malformed base.
func AcceptNostrConnect(u nip46.NostrConnectURI, base string) (session.NostrConnect, error) {
	has := base != ""
	granted, err := nip46.GrantAtConnect(base, has, u.Perms)
	if err != nil {
		return session.NostrConnect{}, err
	}
	m, verr := nip46.ClientMetadata{Name: u.Name, URL: u.URL, Image: u.Image}.Validate()
	info := session.ClientInfo{Name: m.Name, URL: m.URL, Image: m.Image}
	if verr != nil {
		info.Note = verr.Error()
	}
	if u.MetadataNote != "" {
		info.Note = strings.TrimPrefix(strings.Join([]string{info.Note, u.MetadataNote}, "; "), "; ")
	}
	return session.NostrConnect{Client: u.ClientPubKey, Relays: u.Relays, Secret: u.Secret, Perms: granted.String(),
		RequestedPerms: u.Perms, Name: m.Name, Metadata: m.JSON(), Info: info}, nil
}
