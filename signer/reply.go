package signer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
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
	ev, err := s.responseEvent(t, resp)
	if err != nil {
		return err
	}
	return s.publish(ctx, ev, t.client, arrivedOn)
}

// responseEvent is resp encrypted for the client and signed: a kind-24133 event p-tagged to it.
func (s *RemoteSigner) responseEvent(t transport, resp nip46.Response) (nostr.Event, error) {
	body, err := json.Marshal(resp)
	if err != nil {
		return nostr.Event{}, err
	}
	content, err := t.encrypt(s.sk, string(body))
	if err != nil {
		return nostr.Event{}, err
	}
	ev := nostr.Event{
		PubKey:    s.pk,
		CreatedAt: nostr.Now(),
		Kind:      nip46.KindNostrConnect,
		Tags:      nostr.Tags{{"p", t.client}},
		Content:   content,
	}
	if err := s.key.sign(&ev); err != nil {
		return nostr.Event{}, err
	}
	return ev, nil
}

// Handling slots. At most maxHandling events are handled at once (checked, decrypted, decided,
// answered: CPU and database work). Publishing an answer then waits for the relays' OKs (a
// quorum; a slow relay up to the publish timeout): an event waiting for that gives its handling
// slot up for one of maxAnswering answering slots, so that slow relays cannot hold up the
// handling of other requests. When every answering slot is taken, the handling slot is kept:
// the intake slows down instead of piling up answers.
const (
	maxHandling  = 16
	maxAnswering = 1024
)

// slot is an event's handling slot, released once.
type slot struct {
	once sync.Once
	free func()
}

func (sl *slot) release() { sl.once.Do(sl.free) }

type slotKey struct{}

// withSlot returns ctx carrying the event's handling slot.
func withSlot(ctx context.Context, sl *slot) context.Context {
	return context.WithValue(ctx, slotKey{}, sl)
}

// awaitRelays trades the handling slot ctx carries (if any) for an answering slot, for the wait
// on the relays; call done when the publish returned. Without a slot in ctx, or when ctx ends
// while it waits for an answering slot, nothing changes hands.
func (s *RemoteSigner) awaitRelays(ctx context.Context) (done func()) {
	sl, ok := ctx.Value(slotKey{}).(*slot)
	if !ok {
		return func() {}
	}
	select {
	case s.answering <- struct{}{}:
	case <-ctx.Done():
		return func() {}
	}
	sl.release()
	return func() { <-s.answering }
}

// eventKey is the remote signer's Nostr secret key, parsed once, with its x-only pubkey (hex).
// go-nostr's Event.Sign takes the key as hex and, on every event, decodes it, recomputes its
// public key and verifies the signature it made (BIP-340 step 14); this signs with the parsed
// key and without that step.
//
// Why dropping step 14 is safe here: BIP-340 calls it a guard against computation faults that
// could leak the key through an invalid signature, "recommended, but can be omitted if the
// computation cost is prohibitive". The leak needs two signatures whose nonces an attacker can
// relate, which deterministic nonces (RFC 6979, go-nostr's default through btcec) give for the
// same message; sign uses BIP-340's own nonce derivation with 32 bytes of fresh randomness
// (aux_rand, steps 6-8), so every signature's nonce is new and a faulty one tells nothing about
// the key. An invalid signature, should one ever be made, is refused by the relays and by the
// client (NIP-01), which then re-sends its request.
type eventKey struct {
	sk *btcec.PrivateKey
	pk string
}

// parseEventKey parses a hex secret key (32 bytes, 0 < key < n).
func parseEventKey(skHex string) (eventKey, error) {
	b, err := hex.DecodeString(skHex)
	if err != nil || len(b) != 32 {
		return eventKey{}, errors.New("not 32 bytes of hex")
	}
	var k btcec.ModNScalar
	if overflow := k.SetByteSlice(b); overflow || k.IsZero() {
		return eventKey{}, errors.New("not a secp256k1 secret key")
	}
	sk := btcec.PrivKeyFromScalar(&k)
	return eventKey{sk: sk, pk: hex.EncodeToString(schnorr.SerializePubKey(sk.PubKey()))}, nil
}

// sign sets ev's PubKey, its ID (the sha256 of go-nostr's NIP-01 serialization, as Event.GetID
// computes it) and its Sig (BIP-340 with fresh aux_rand), like go-nostr's Event.Sign. Errors:
// the system's random source failing, or the signing library's.
func (k eventKey) sign(ev *nostr.Event) error {
	if ev.Tags == nil {
		ev.Tags = nostr.Tags{}
	}
	ev.PubKey = k.pk
	h := sha256.Sum256(ev.Serialize())
	var aux [32]byte
	if _, err := rand.Read(aux[:]); err != nil {
		return fmt.Errorf("signer: randomness for a signature: %w", err)
	}
	sig, err := schnorr.Sign(k.sk, h[:], schnorr.FastSign(), schnorr.CustomNonce(aux))
	if err != nil {
		return fmt.Errorf("signer: sign event: %w", err)
	}
	ev.ID = hex.EncodeToString(h[:])
	ev.Sig = hex.EncodeToString(sig.Serialize())
	return nil
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
