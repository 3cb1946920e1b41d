package signer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
)

// ClientOptions tune a Client. The zero value gives the documented defaults.
type ClientOptions struct {
	// Timeout bounds the wait for a response to one call (default 30s). After an auth_url
	// response the call waits up to AuthTimeout instead.
	Timeout time.Duration
	// AuthTimeout bounds the wait for the real answer after auth_url (default 15m).
	AuthTimeout time.Duration
	// OnAuthURL is called when the remote signer answers a call with auth_url (NIP-46, "Auth
	// Challenges"): the URL a person must open. The call keeps waiting on the same id.
	// Default: log the URL.
	OnAuthURL func(method, requestID, url string)
	// Perms are the permissions asked for in connect ("method[:kind],…"), optional.
	Perms string
	// Metadata is what the client says about itself in connect's fourth param (NIP-46
	// "Client metadata": a bunker:// client SHOULD send it), optional; a display hint for the
	// remote signer's operator.
	Metadata nip46.ClientMetadata
	// Pool carries the requests (default: a relaypool.Pool on the bunker URI's relays, closed by
	// Close).
	Pool   RelayPool
	Logger *slog.Logger
}

// Client is a NIP-46 client (NIP-46 "client" role): it sends requests to one remote signer over
// NIP-44 v2 encrypted kind-24133 events and waits for the responses. Create it with DialBunker;
// it is safe for concurrent calls; Close it when done.
type Client struct {
	sk, pk string
	remote string // remote-signer pubkey
	secret string
	ck     [32]byte
	pool   RelayPool
	own    ClosablePool
	opts   ClientOptions
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]chan nip46.Response
	closed  bool

	cancel  context.CancelFunc
	stopped <-chan struct{} // closed by Close
	wg      sync.WaitGroup
}

// DialBunker parses a bunker:// URI, subscribes to the remote signer's responses and sends
// connect [remote_signer_pubkey, secret, perms] (NIP-46, "Direct connection initiated by remote
// signer"), retrying it (connect is idempotent for this client) until it is answered, so that
// the subscription is known to be live before other calls. clientSK is the client's key (hex).
// Errors: ErrBadURI, ErrTimeout, *RemoteError (for example an unknown or spent secret).
func DialBunker(ctx context.Context, clientSK, bunkerURI string, opts ClientOptions) (*Client, error) {
	bp, err := nip46.ParseBunkerURI(bunkerURI)
	if err != nil {
		return nil, err
	}
	c, err := newClient(clientSK, bp, opts)
	if err != nil {
		return nil, err
	}
	if err := c.connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newClient(clientSK string, bp nip46.BunkerPointer, opts ClientOptions) (*Client, error) {
	pk, err := nostr.GetPublicKey(clientSK)
	if err != nil {
		return nil, fmt.Errorf("signer: bad client secret key: %w", keystore.ErrNotOurKey)
	}
	ck, err := nip44.GenerateConversationKey(bp.RemoteSignerPubKey, clientSK)
	if err != nil {
		return nil, fmt.Errorf("%w: remote signer pubkey: %v", nip46.ErrBadURI, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.AuthTimeout <= 0 {
		opts.AuthTimeout = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{sk: clientSK, pk: pk, remote: bp.RemoteSignerPubKey, secret: bp.Secret, ck: ck, opts: opts,
		log: opts.Logger.With("component", "nip46-client", "remote_signer", bp.RemoteSignerPubKey), pending: make(map[string]chan nip46.Response)}
	if opts.OnAuthURL == nil {
		c.opts.OnAuthURL = func(method, id, url string) {
			c.log.Warn("remote signer holds the request; open the URL to continue", "method", method, "id", id, "url", url)
		}
	}
	c.pool = opts.Pool
	if c.pool == nil {
		p, err := relaypool.New(bp.Relays, relaypool.Options{Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("signer: client relays: %w", err)
		}
		c.pool, c.own = p, p
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.stopped = cancel, ctx.Done()
	since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
	events := c.pool.Subscribe(ctx, nostr.Filter{Kinds: []int{nip46.KindNostrConnect}, Authors: []string{c.remote},
		Tags: nostr.TagMap{"p": []string{c.pk}}, Since: &since})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.receive(ctx, events)
	}()
	return c, nil
}

// PublicKey is the client's pubkey (hex).
func (c *Client) PublicKey() string { return c.pk }

// Close stops the client; calls in flight return ErrClientClosed.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if c.own != nil {
		c.own.Close()
	}
}

// receive routes responses to the calls waiting on their ids (owned by newClient's goroutine).
func (c *Client) receive(ctx context.Context, events <-chan relaypool.Event) {
	for ev := range relaypool.Until(ctx, events) {
		c.route(ev)
	}
}

// route hands one event from the remote signer to the call waiting on its response id; anything
// else (not from the remote signer, oversized, undecryptable, malformed, a request, an id no call
// waits on) is dropped.
func (c *Client) route(ev relaypool.Event) {
	if ev.PubKey != c.remote || len(ev.Content) > MaxContentBytes {
		return
	}
	plain, err := nip44.Decrypt(ev.Content, c.ck)
	if err != nil {
		c.log.Warn("undecryptable response dropped", "event", ev.ID, "error", err)
		return
	}
	var r struct {
		nip46.Response
		Method *string `json:"method"`
	}
	if err := json.Unmarshal([]byte(plain), &r); err != nil || r.ID == "" {
		c.log.Warn("malformed response dropped", "event", ev.ID)
		return
	}
	if r.Method != nil {
		// A request from the remote signer's key to ours: when this client's key is also
		// a remote signer's (co-signers asking each other), the peer's requests reach this
		// subscription too. They are for our remote signer, never a response.
		return
	}
	c.mu.Lock()
	ch := c.pending[r.ID]
	c.mu.Unlock()
	if ch == nil {
		return // a duplicate, or a response to a call that gave up
	}
	select {
	case ch <- r.Response:
	default:
	}
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Call sends method with params and returns the result (NIP-46 request/response). It follows
// auth_url: OnAuthURL is called and the call keeps waiting on the same id, up to AuthTimeout.
// Errors: *RemoteError for an error response, ErrTimeout, ErrClientClosed, ctx's error, or a
// publish error when no relay accepted the request.
func (c *Client) Call(ctx context.Context, method string, params ...string) (string, error) {
	return c.exchange(ctx, newRequestID(), method, params, waitRule{timeout: c.opts.Timeout, mustSend: true})
}

// maxHeldResend bounds how far CallWithID's re-send interval grows while a request is held, as a
// multiple of the caller's interval.
const maxHeldResend = 16

// CallWithID sends method with params under the caller's request id and waits until it is
// answered or ctx is done; it never gives up on its own (ClientOptions.Timeout and AuthTimeout do
// not apply). The request is made resumable this way (NIP-46 ids are chosen by the client): a
// caller that stored id before calling asks again after a restart with the same id and params,
// and a remote signer that keeps its answers (this project's sign_psbt: "the same request is
// answered the same way again, never evaluated twice") answers the same way.
//
// Every resend without an answer (default: ClientOptions.Timeout) the same request is published
// again as a new event — relays keep no kind-24133 event, so a request or response lost on a
// relay that dropped, or published while this client was away, is not waited on forever; a
// failed publish (no relay reachable) is logged and retried at the next resend. After an
// auth_url response (NIP-46 "Auth Challenges") onAuthURL (if not nil; else ClientOptions'
// OnAuthURL) is called with the URL, and the call keeps waiting on the same id, still re-sending
// (the remote signer answers a held request's repeat with auth_url again, or with its answer),
// at an interval that doubles after each re-send up to 16 × resend: the answer to a held request
// is pushed when the hold ends, a re-send only recovers a push that was lost.
// Errors: *RemoteError for an error response, ErrClientClosed, ctx's error, or ErrBadRequestID
// for an empty id or one longer than 128 characters.
func (c *Client) CallWithID(ctx context.Context, id, method string, params []string, resend time.Duration, onAuthURL func(url string)) (string, error) {
	if id == "" || len(id) > nip46.MaxRequestIDLength {
		return "", fmt.Errorf("%w: %d characters", ErrBadRequestID, len(id))
	}
	if resend <= 0 {
		resend = c.opts.Timeout
	}
	return c.exchange(ctx, id, method, params, waitRule{resend: resend, resendWhileHeld: true, onAuthURL: onAuthURL})
}

// waitRule is how exchange waits for a request's answer.
type waitRule struct {
	// timeout gives up with ErrTimeout when no answer came in time; after an auth_url answer
	// the wait starts again with ClientOptions.AuthTimeout. 0: never give up.
	timeout time.Duration
	// resend re-publishes the request after every resend without an answer (0: never).
	resend time.Duration
	// resendWhileHeld keeps re-sending after auth_url, at an interval that doubles up to
	// maxHeldResend × resend; without it re-sending stops at auth_url.
	resendWhileHeld bool
	// mustSend returns the first send's error; without it a failed send is logged and the
	// request re-sent at the next resend.
	mustSend bool
	// onAuthURL replaces ClientOptions.OnAuthURL for this request when not nil.
	onAuthURL func(url string)
}

// exchange publishes one request under id and waits for its final answer as w says, following
// auth_url (NIP-46 "Auth Challenges"). Errors: *RemoteError, ErrTimeout, ErrClientClosed,
// ErrBadRequestID (id already waited on), ctx's error, or (mustSend) the send's error.
func (c *Client) exchange(ctx context.Context, id, method string, params []string, w waitRule) (string, error) {
	body, err := c.requestBody(id, method, params)
	if err != nil {
		return "", err
	}
	ch, done, err := c.register(id)
	if err != nil {
		return "", err
	}
	defer done()
	if err := c.send(ctx, body); err != nil {
		if w.mustSend {
			return "", err
		}
		c.log.Warn("sending request failed; re-sending later", "method", method, "id", id, "error", err)
	}
	var deadline, tick <-chan time.Time
	var deadlineTimer, resendTimer *time.Timer
	if w.timeout > 0 {
		deadlineTimer = time.NewTimer(w.timeout)
		defer deadlineTimer.Stop()
		deadline = deadlineTimer.C
	}
	interval := w.resend
	if interval > 0 {
		resendTimer = time.NewTimer(interval)
		defer resendTimer.Stop()
		tick = resendTimer.C
	}
	held := false
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-c.stopped:
			return "", ErrClientClosed
		case <-deadline:
			return "", fmt.Errorf("%s: %w", method, ErrTimeout)
		case <-tick:
			if err := c.send(ctx, body); err != nil {
				c.log.Warn("re-sending request failed", "method", method, "id", id, "error", err)
			}
			if held { // the answer is pushed when the hold ends; re-sends only cover a lost push
				interval = min(2*interval, maxHeldResend*w.resend)
			}
			resendTimer.Reset(interval)
		case r := <-ch:
			url, ok := r.AuthURL()
			if !ok {
				return r.Outcome()
			}
			held = true
			if w.onAuthURL != nil {
				w.onAuthURL(url)
			} else {
				c.opts.OnAuthURL(method, id, url)
			}
			if deadlineTimer != nil {
				deadlineTimer.Reset(c.opts.AuthTimeout)
			}
			if !w.resendWhileHeld {
				tick = nil
			}
		}
	}
}

func (c *Client) requestBody(id, method string, params []string) (string, error) {
	if params == nil {
		params = []string{}
	}
	body, err := json.Marshal(nip46.Request{ID: id, Method: method, Params: params})
	return string(body), err
}

// register makes id's response channel; done removes it.
func (c *Client) register(id string) (<-chan nip46.Response, func(), error) {
	ch := make(chan nip46.Response, 4)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClientClosed
	}
	if _, dup := c.pending[id]; dup {
		return nil, nil, fmt.Errorf("%w: id %q is already being waited on", ErrBadRequestID, id)
	}
	c.pending[id] = ch
	return ch, func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}, nil
}

func (c *Client) send(ctx context.Context, body string) error {
	content, err := nip44.Encrypt(body, c.ck)
	if err != nil {
		return err
	}
	ev := nostr.Event{PubKey: c.pk, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect,
		Tags: nostr.Tags{{"p", c.remote}}, Content: content}
	if err := ev.Sign(c.sk); err != nil {
		return err
	}
	if n, err := relaypool.Published(c.pool.Publish(ctx, ev)); n == 0 {
		if err == nil {
			err = errors.New("no relay")
		}
		return fmt.Errorf("signer: request not accepted by any relay: %w", err)
	}
	return nil
}

// connect sends connect until answered (re-sent every 2s: the relays keep no kind-24133 event,
// so a response sent before our subscription reached a relay is lost there).
func (c *Client) connect(ctx context.Context) error {
	params := []string{c.remote}
	meta := c.opts.Metadata.JSON()
	if c.secret != "" || c.opts.Perms != "" || meta != "" {
		params = append(params, c.secret)
	}
	if c.opts.Perms != "" || meta != "" {
		params = append(params, c.opts.Perms) // "" keeps the metadata fourth
	}
	if meta != "" {
		params = append(params, meta)
	}
	res, err := c.exchange(ctx, newRequestID(), "connect", params, waitRule{timeout: c.opts.Timeout, resend: 2 * time.Second, mustSend: true})
	if err != nil {
		return err
	}
	if res != "ack" && (c.secret == "" || res != c.secret) {
		return fmt.Errorf("signer: connect answered %q, not ack", truncate(res, 64))
	}
	return nil
}
