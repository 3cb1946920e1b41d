package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
)

// Answers: a response encrypted in the client's transport and published to every relay the
// client may listen on, right away or late (Respond, for a held request).

// reply encrypts resp for the client and publishes it to the pool and to the client's own
// relays (and the relay the request came on, if outside the pool).
func (s *RemoteSigner) reply(ctx context.Context, t transport, arrivedOn string, resp nip46.Response) error {
	body, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	content, err := t.encrypt(s.sk, string(body))
	if err != nil {
		return err
	}
	ev := nostr.Event{
		PubKey:    s.pk,
		CreatedAt: nostr.Now(),
		Kind:      nip46.KindNostrConnect,
		Tags:      nostr.Tags{{"p", t.client}},
		Content:   content,
	}
	if err := ev.Sign(s.sk); err != nil {
		return err
	}
	return s.publish(ctx, ev, t.client, arrivedOn)
}

func (s *RemoteSigner) publish(ctx context.Context, ev nostr.Event, client, arrivedOn string) error {
	// Publishing must finish even while shutting down: the request was acknowledged.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	extra, other := s.targets(client, arrivedOn)
	pt, canPublishTo := s.pool.(PublisherTo)
	pools := append([]RelayPool{s.pool}, extra...)
	results := make([][]relaypool.PublishResult, len(pools))
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 && canPublishTo && len(other) > 0 {
				results[i] = pt.PublishTo(pctx, ev, other)
				return
			}
			results[i] = p.Publish(pctx, ev)
		}()
	}
	wg.Wait()
	n, err := relaypool.Published(slices.Concat(results...))
	if n == 0 {
		if err == nil {
			err = errors.New("no relay")
		}
		return err
	}
	if err != nil {
		s.log.Warn("response not accepted by every relay", "accepted", n, "error", err)
	}
	return nil
}

// Respond delivers the late answer to a request that was answered with auth_url:
// result, or err's MethodError wire form. It is encrypted in the transport that request came
// with (NIP-44, or NIP-04 in legacy mode; recorded in the store, so also after a restart; the
// client's last transport if unrecorded) and published to the pool, the client's own relays and
// the relay the request arrived on. Errors: no relay accepted it, or a bad
// client pubkey.
func (s *RemoteSigner) Respond(ctx context.Context, client, requestID, result string, err error) error {
	ck, kerr := s.conversationKey(client)
	if kerr != nil {
		return fmt.Errorf("signer: respond to %s: %w", truncate(client, 64), kerr)
	}
	legacy := s.clientLegacy.Contains(client)
	arrivedOn := ""
	tr, on, known, terr := s.sessions.RequestTransport(ctx, client, requestID)
	if terr != nil {
		s.log.Warn("cannot read the held request's transport; answering in the client's last one", "client", client, "error", terr)
	} else if known {
		legacy, arrivedOn = tr == session.TransportNIP04, on
	}
	resp := nip46.Response{ID: requestID, Result: result}
	if err != nil {
		resp.Result, resp.Error = "", nip46.AsMethodError(err).Error()
	} else if result == "" {
		return fmt.Errorf("signer: respond to %s/%s: empty result (NIP-46 clients never resolve it)", truncate(client, 64), truncate(requestID, 64))
	}
	if rerr := s.reply(ctx, transport{client: client, ck: ck, nip04: legacy}, arrivedOn, resp); rerr != nil {
		return fmt.Errorf("signer: respond to %s/%s: %w", truncate(client, 64), truncate(requestID, 64), rerr)
	}
	if known {
		if derr := s.sessions.DeleteRequestTransport(context.WithoutCancel(ctx), client, requestID); derr != nil {
			s.log.Warn("cannot forget the held request's transport", "error", derr)
		}
	}
	s.log.Info("late answer sent", "client", client, "id", truncate(requestID, 64), "error", resp.Error)
	return nil
}
