package nip46e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/relaypool"
)

// KindNostrConnect is the NIP-46 request/response event kind.
const KindNostrConnect = 24133

// Response is one NIP-46 response as the client received it.
type Response struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// EventID is the id of the kind-24133 event that carried it.
	EventID string `json:"-"`
}

// Client is a plain NIP-46 client (NIP-44 v2 transport, kind 24133) over relaypool, written
// for the tests and benchmarks: besides Call it can publish hand-made events (replays, forged
// tags, stale timestamps) and it counts every distinct response event per request id, so that
// a test can show each request was answered once. It is not the product's NIP-46 client.
type Client struct {
	SK, PK string // the client's key pair, hex
	Signer string // the remote signer's pubkey, hex

	pool *relaypool.Pool
	ck   [32]byte

	mu        sync.Mutex
	waiters   map[string][]chan Response
	responses map[string][]Response // request id -> every distinct response event
	ready     chan struct{}
	readyOnce sync.Once

	cancel context.CancelFunc
	done   chan struct{}
}

// Dial connects a client with secret key sk (hex) to the remote signer signerPK over relays
// and returns once its subscription for responses is live on at least one relay (shown by
// an event it sends to itself coming back). Close it when done.
func Dial(ctx context.Context, sk, signerPK string, relays []string, log *slog.Logger) (*Client, error) {
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nil, fmt.Errorf("nip46e2e: client key: %w", err)
	}
	ck, err := nip44.GenerateConversationKey(signerPK, sk)
	if err != nil {
		return nil, fmt.Errorf("nip46e2e: conversation key: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := relaypool.New(relays, relaypool.Options{Logger: log, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		return nil, err
	}
	c := &Client{SK: sk, PK: pk, Signer: signerPK, pool: pool, ck: ck,
		waiters: map[string][]chan Response{}, responses: map[string][]Response{},
		ready: make(chan struct{}), done: make(chan struct{})}
	sctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
	events := pool.Subscribe(sctx, nostr.Filter{Kinds: []int{KindNostrConnect}, Tags: nostr.TagMap{"p": []string{pk}}, Since: &since})
	go func() {
		defer close(c.done)
		for ev := range events {
			c.receive(ev.Event)
		}
	}()
	if err := c.waitLive(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitLive publishes a self-addressed probe until one comes back through the subscription.
func (c *Client) waitLive(ctx context.Context) error {
	for {
		probe := nostr.Event{PubKey: c.PK, CreatedAt: nostr.Now(), Kind: KindNostrConnect,
			Tags: nostr.Tags{{"p", c.PK}}, Content: "probe " + randomID()}
		if err := probe.Sign(c.SK); err != nil {
			return err
		}
		c.pool.Publish(ctx, probe)
		select {
		case <-c.ready:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("nip46e2e: subscription not live on any relay: %w", ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (c *Client) receive(ev *nostr.Event) {
	if ev.PubKey == c.PK {
		c.readyOnce.Do(func() { close(c.ready) })
		return
	}
	if ev.PubKey != c.Signer {
		return
	}
	plain, err := nip44.Decrypt(ev.Content, c.ck)
	if err != nil {
		return
	}
	var r Response
	if json.Unmarshal([]byte(plain), &r) != nil || r.ID == "" {
		return
	}
	r.EventID = ev.ID
	c.mu.Lock()
	c.responses[r.ID] = append(c.responses[r.ID], r)
	ws := c.waiters[r.ID]
	c.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- r:
		default:
		}
	}
}

// Request builds and signs a NIP-46 request event: {"id","method","params"} NIP-44 encrypted
// to the remote signer, p-tagged to it. It returns the event and the request id.
func (c *Client) Request(method string, params ...string) (nostr.Event, string, error) {
	if params == nil {
		params = []string{}
	}
	id := randomID()
	body, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return nostr.Event{}, "", err
	}
	ev, err := c.Seal(string(body), nostr.Tags{{"p", c.Signer}}, nostr.Now())
	return ev, id, err
}

// Seal encrypts plaintext to the remote signer (NIP-44 v2) into a signed kind-24133 event with
// the given tags and created_at.
func (c *Client) Seal(plaintext string, tags nostr.Tags, at nostr.Timestamp) (nostr.Event, error) {
	content, err := nip44.Encrypt(plaintext, c.ck)
	if err != nil {
		return nostr.Event{}, err
	}
	ev := nostr.Event{PubKey: c.PK, CreatedAt: at, Kind: KindNostrConnect, Tags: tags, Content: content}
	return ev, ev.Sign(c.SK)
}

// Publish sends ev to every relay and returns how many accepted it.
func (c *Client) Publish(ctx context.Context, ev nostr.Event) (int, error) {
	return relaypool.Published(c.pool.Publish(ctx, ev))
}

// Watch registers interest in the responses to request id; call it before publishing.
func (c *Client) Watch(id string) <-chan Response {
	ch := make(chan Response, 4)
	c.mu.Lock()
	c.waiters[id] = append(c.waiters[id], ch)
	c.mu.Unlock()
	return ch
}

func (c *Client) unwatch(id string) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

// Send publishes a request event built by Request and waits for its final response (an
// auth_url response is skipped: the real answer follows on the same id).
func (c *Client) Send(ctx context.Context, ev nostr.Event, id string) (Response, error) {
	ch := c.Watch(id)
	defer c.unwatch(id)
	res := c.pool.Publish(ctx, ev)
	if n, err := relaypool.Published(res); n == 0 {
		return Response{}, fmt.Errorf("nip46e2e: no relay accepted request %s: %w", id, err)
	}
	for {
		select {
		case r := <-ch:
			if r.Result == "auth_url" {
				continue
			}
			return r, nil
		case <-ctx.Done():
			// The event id and where it went, to look the request up in the daemon's and the
			// relays' logs.
			return Response{}, fmt.Errorf("nip46e2e: no response to request %s (event %s, published: %s): %w", id, ev.ID, publishedTo(res), ctx.Err())
		}
	}
}

// publishedTo summarises a publish's per-relay outcome: "<url> ok" or "<url> <error>".
func publishedTo(res []relaypool.PublishResult) string {
	parts := make([]string, len(res))
	for i, r := range res {
		switch {
		case r.Err != nil:
			parts[i] = r.Relay + " " + r.Err.Error()
		case r.Unconfirmed:
			parts[i] = r.Relay + " written (no OK for ephemeral events)"
		default:
			parts[i] = r.Relay + " ok"
		}
	}
	return strings.Join(parts, "; ")
}

// Call sends method(params) and waits for the response. A transport failure or ctx's end is an
// error; the remote signer's error answer is in Response.Error.
func (c *Client) Call(ctx context.Context, method string, params ...string) (Response, error) {
	ev, id, err := c.Request(method, params...)
	if err != nil {
		return Response{}, err
	}
	return c.Send(ctx, ev, id)
}

// Responses returns every distinct response event received for request id.
func (c *Client) Responses(id string) []Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Response(nil), c.responses[id]...)
}

// ResponseIDs returns the request ids that got at least one response.
func (c *Client) ResponseIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.responses))
	for id := range c.responses {
		ids = append(ids, id)
	}
	return ids
}

// Close ends the subscription and the relay connections.
func (c *Client) Close() {
	c.cancel()
	c.pool.Close()
	<-c.done
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
