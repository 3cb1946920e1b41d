package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
)

// Limits on incoming requests.
const (
	// MaxContentBytes bounds the encrypted content of one request event. NIP-44 v2 carries at
	// most 65,535 bytes of plaintext, which base64 and the envelope grow to under 90,000.
	MaxContentBytes = 96 * 1024
	// MaxClockSkew is how far a request's created_at may be from now; older events are replays.
	MaxClockSkew = 10 * time.Minute
	// ReplayWindow is how long a handled event's id is remembered (in memory and in the store's
	// replay set): longer than any created_at the skew check lets through.
	ReplayWindow = 2*MaxClockSkew + time.Minute
	// MaxClientRelays bounds the relays outside the pool that client sessions may add
	// (nostrconnect:// URIs accepted by the operator): at most this many pools on a client's own
	// relays are open at once. Further relays are still published to (PublisherTo) but not
	// listened on.
	MaxClientRelays = 32
	// DefaultClientRelayIdle is how long a pool on a client's own relay stays open while no
	// event arrives on it and no response goes to it; WithClientRelayIdle changes it.
	DefaultClientRelayIdle = 24 * time.Hour
	// activityFlushEvery is how often per-client request counts and last-seen times are written.
	activityFlushEvery = 5 * time.Second
	// sessionSyncEvery is how often the open client-relay pools are matched against the stored
	// sessions (sessions ended with `cosigner clients revoke` release their relays).
	sessionSyncEvery = time.Minute
	// maxActivityClients bounds the unflushed activity map (pubkeys beyond it are not counted).
	maxActivityClients = 10000
	// maxSeenEvents bounds the in-memory replay set (event ids, least recently added evicted
	// first). Requests from clients are also checked against the durable set (SeenEvents); for
	// other senders the in-memory set is all there is, and what it forgets can only be a
	// connect whose single-use secret a replay cannot spend twice.
	maxSeenEvents = 65536
	// maxConversationKeys bounds the cached NIP-44 conversation keys (LRU).
	maxConversationKeys = 10000
	// maxLegacyClients bounds the clients remembered as speaking NIP-04 (legacy mode, LRU); a
	// client forgotten here gets its late answers in NIP-44 unless the held request's transport
	// was recorded (it is, for every held request).
	maxLegacyClients = 10000
)

// Default per-client rate limit (token bucket, golang.org/x/time/rate): requests per second and
// burst. WithRateLimit changes it.
const (
	DefaultRatePerSecond = 20
	DefaultRateBurst     = 100
)

// RelayPool is what the remote signer needs from the relays (satisfied by *relaypool.Pool).
type RelayPool interface {
	Subscribe(ctx context.Context, filter nostr.Filter) <-chan relaypool.Event
	Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult
	URLs() []string
}

// ClosablePool is a RelayPool the remote signer opens itself (a client's own relays) and closes
// when it stops (satisfied by *relaypool.Pool).
type ClosablePool interface {
	RelayPool
	Close()
}

// PoolDialer opens a pool on urls (for example relaypool.New with the daemon's options).
type PoolDialer func(urls []string) (ClosablePool, error)

// HandlerFunc answers one NIP-46 method called by a connected client: a non-empty result
// string, or an error (a *nip46.MethodError is answered as is, a *nip46.HeldError as auth_url,
// anything else as "internal: …").
type HandlerFunc func(ctx context.Context, req nip46.Call) (string, error)

// Option configures a RemoteSigner.
type Option func(*RemoteSigner)

// WithLegacyNIP04 accepts requests in NIP-04 transport encryption (answered in NIP-04) and
// serves nip04_encrypt / nip04_decrypt, for old clients such as go-nostr v0.38's BunkerClient.
// Off by default: current NIP-46 is NIP-44 only (nostr-protocol/nips PR #1248).
func WithLegacyNIP04(on bool) Option { return func(s *RemoteSigner) { s.legacyNIP04 = on } }

// WithRateLimit limits each client pubkey to perSecond requests per second with bursts of burst
// (token bucket); requests above it are answered "rate_limited: …". perSecond <= 0 turns the
// limit off.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(s *RemoteSigner) { s.limits = newRateLimits(perSecond, burst) }
}

// WithClientRelays lets the remote signer open pools on relays outside its own pool: the
// relays a nostrconnect:// client named. Without it, such clients are answered only on the
// pool's relays.
func WithClientRelays(dial PoolDialer) Option { return func(s *RemoteSigner) { s.dial = dial } }

// WithClientRelayIdle closes a pool on a client's own relay after d without any event on it or
// response to it (d <= 0: never; default DefaultClientRelayIdle). A client that comes back later
// is still answered there (published to), and listened on again after a restart or a new
// `cosigner connect`.
func WithClientRelayIdle(d time.Duration) Option { return func(s *RemoteSigner) { s.idle = d } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(s *RemoteSigner) { s.now = now } }

// RemoteSigner is the NIP-46 remote signer (bunker). Create it with NewRemoteSigner, register
// extension methods with Handle, and call Run.
type RemoteSigner struct {
	sk, pk      string
	key         eventKey // sk parsed once, signs every answer (reply.go)
	pool        RelayPool
	sessions    Sessions
	log         *slog.Logger
	now         func() time.Time
	legacyNIP04 bool
	limits      *rateLimits
	dial        PoolDialer
	idle        time.Duration

	handlersMu sync.RWMutex
	handlers   map[string]HandlerFunc

	conv *lru.Cache[string, [32]byte] // NIP-44 conversation keys by client pubkey

	seen *seenIDs

	// clientLegacy holds the clients whose last request came in NIP-04 (legacy mode only).
	clientLegacy *lru.Cache[string, struct{}]

	drops dropCounters

	clientMu      sync.Mutex
	clientRelays  map[string][]string   // client pubkey -> its own relays (nostrconnect)
	extra         map[string]*extraPool // by relay URL
	awaiting      map[string]bool       // clients whose nostrconnect response awaits their first request
	activity      map[string]session.Activity
	runCtx        context.Context
	filter        nostr.Filter
	nostrConnects chan struct{}

	sem       chan struct{} // events being handled, at most maxHandling (reply.go)
	answering chan struct{} // answers waiting for the relays, at most maxAnswering
	wg        sync.WaitGroup
}

// NewRemoteSigner returns a remote signer for the Nostr identity key sk (hex) that serves over
// pool and keeps sessions in sessions. It offers the built-in NIP-46 methods; extension methods
// such as sign_psbt are offered once registered with Handle.
func NewRemoteSigner(sk string, pool RelayPool, sessions Sessions, log *slog.Logger, opts ...Option) (*RemoteSigner, error) {
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nil, fmt.Errorf("signer: bad Nostr secret key: %w", keystore.ErrNotOurKey)
	}
	key, err := parseEventKey(sk)
	if err != nil {
		return nil, fmt.Errorf("signer: bad Nostr secret key: %w", keystore.ErrNotOurKey)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &RemoteSigner{
		sk: sk, pk: pk, key: key, pool: pool, sessions: sessions,
		log: log.With("component", "signer"), now: time.Now,
		limits:        newRateLimits(DefaultRatePerSecond, DefaultRateBurst),
		handlers:      make(map[string]HandlerFunc),
		conv:          mustLRU[[32]byte](maxConversationKeys),
		seen:          newSeenIDs(ReplayWindow, maxSeenEvents),
		clientLegacy:  mustLRU[struct{}](maxLegacyClients),
		clientRelays:  make(map[string][]string),
		extra:         make(map[string]*extraPool),
		awaiting:      make(map[string]bool),
		activity:      make(map[string]session.Activity),
		idle:          DefaultClientRelayIdle,
		sem:           make(chan struct{}, maxHandling),
		answering:     make(chan struct{}, maxAnswering),
		nostrConnects: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	s.registerBuiltins()
	return s, nil
}

// PublicKey is the remote signer's pubkey (hex); it is also the user pubkey.
func (s *RemoteSigner) PublicKey() string { return s.pk }

// Handle registers h for method (an extension method such as sign_psbt or approve, or a
// replacement of a built-in one except the session methods). Call it before Run. A connected
// client needs the permission named method to call it. Errors: the method name is malformed
// or a session method.
func (s *RemoteSigner) Handle(method string, h HandlerFunc) error {
	if !nip46.ValidMethodName(method) || !nip46.NeedsPermission(method) || h == nil {
		return fmt.Errorf("signer: cannot register a handler for %q", method)
	}
	s.handlersMu.Lock()
	defer s.handlersMu.Unlock()
	s.handlers[method] = h
	return nil
}

func (s *RemoteSigner) handler(method string) (HandlerFunc, bool) {
	s.handlersMu.RLock()
	defer s.handlersMu.RUnlock()
	h, ok := s.handlers[method]
	return h, ok
}

// Run subscribes to kind-24133 events p-tagged to this signer on every relay (the pool's, and the
// relays of nostrconnect:// clients) and answers them until ctx is done; it then waits for
// requests in flight to be answered and closes the pools it opened.
func (s *RemoteSigner) Run(ctx context.Context) error {
	since := nostr.Timestamp(s.now().Add(-MaxClockSkew).Unix())
	s.clientMu.Lock()
	s.runCtx = ctx
	s.filter = nostr.Filter{Kinds: []int{nip46.KindNostrConnect}, Tags: nostr.TagMap{"p": []string{s.pk}}, Since: &since}
	s.clientMu.Unlock()
	defer s.closeExtra()
	defer s.wg.Wait()
	defer s.flushActivity(context.WithoutCancel(ctx))

	if sessions, err := s.sessions.ListSessions(ctx); err != nil {
		s.log.Error("cannot read client sessions; clients on their own relays are not served", "error", err)
	} else {
		for _, c := range sessions {
			if len(c.Relays) > 0 {
				s.setClientRelays(c.Client, c.Relays)
			}
		}
	}
	s.serve(ctx, s.pool, "")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runNostrConnects(ctx)
	}()
	s.log.Info("remote signer listening", "pubkey", s.pk, "relays", s.pool.URLs(), "legacy_nip04", s.legacyNIP04)
	<-ctx.Done()
	return nil
}

// serve subscribes on pool and handles its events until ctx ends (one goroutine owned by Run).
func (s *RemoteSigner) serve(ctx context.Context, pool RelayPool, label string) {
	s.clientMu.Lock()
	filter := s.filter
	s.clientMu.Unlock()
	s.serveWith(ctx, filter, pool, label)
}

func (s *RemoteSigner) serveWith(ctx context.Context, filter nostr.Filter, pool RelayPool, label string) {
	events := pool.Subscribe(ctx, filter)
	used := func() {}
	if label != "" {
		used = func() { s.touchExtra(label) }
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ev := range relaypool.Until(ctx, events) {
			used()
			select {
			case s.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				sl := &slot{free: func() { <-s.sem }}
				defer sl.release()
				defer s.recoverEvent(ev.Event)
				s.handle(withSlot(withArrival(ctx, ev.Received), sl), ev)
			}()
		}
	}()
	if label != "" {
		s.log.Info("listening on a client's relay", "relay", label)
	}
}

// conversationKey returns the NIP-44 conversation key with client, cached (LRU) for clients
// the remote signer serves.
func (s *RemoteSigner) conversationKey(client string) ([32]byte, error) {
	if k, ok := s.conv.Get(client); ok {
		return k, nil
	}
	k, err := nip44.GenerateConversationKey(client, s.sk)
	if err != nil {
		return k, err
	}
	s.conv.Add(client, k)
	return k, nil
}

// mustLRU returns an LRU cache of size entries keyed by pubkey.
func mustLRU[V any](size int) *lru.Cache[string, V] {
	c, err := lru.New[string, V](size)
	if err != nil {
		panic(err) // only for a non-positive size, a constant here
	}
	return c
}

// transport is how one client's messages are encrypted.
type transport struct {
	client string
	nip04  bool     // legacy NIP-04 (only with WithLegacyNIP04)
	ck     [32]byte // NIP-44 conversation key
}

func (t transport) encrypt(sk, plain string) (string, error) {
	if t.nip04 {
		shared, err := nip04.ComputeSharedSecret(t.client, sk)
		if err != nil {
			return "", err
		}
		return nip04.Encrypt(plain, shared)
	}
	return nip44.Encrypt(plain, t.ck)
}

// checkEvent applies the cheap checks every request event must pass before anything else; a
// non-empty reason means drop it. Pure.
func (s *RemoteSigner) checkEvent(ev *nostr.Event) string {
	switch {
	case ev.Kind != nip46.KindNostrConnect || !ev.Tags.ContainsAny("p", []string{s.pk}):
		return "not a NIP-46 request for this signer"
	case len(ev.Content) > MaxContentBytes:
		return "content too large"
	case ev.PubKey == s.pk:
		return "our own event"
	}
	if d := s.now().Sub(ev.CreatedAt.Time()); d > MaxClockSkew || d < -MaxClockSkew {
		return "created_at too far from now (replay or bad clock)"
	}
	return ""
}

// checkAuthentic makes sure ev's id and BIP-340 signature (NIP-01) were checked — by the relay
// pool that delivered it (relaypool.Event.Verified, set only by the pool), or here for an event
// from anywhere else — and records it in the replay set; a non-empty reason means drop it. Each
// event is thus verified exactly once, and an event that did not come through the pool's
// checks cannot skip them. It runs before an event can cost a durable write or an answer: at
// once for clients' events, and for a stranger's only once its content turned out a connect
// with a usable secret (see stranger.go).
func (s *RemoteSigner) checkAuthentic(in relaypool.Event) string {
	if !in.Verified() {
		if err := relaypool.VerifyEvent(in.Event); err != nil {
			return "invalid signature or id"
		}
	}
	ev := in.Event
	if !s.seen.first(ev.ID, s.now()) {
		return "already handled (replayed or delivered by another relay)"
	}
	return ""
}

// decrypt opens a request: NIP-44 v2, or NIP-04 in legacy mode. The conversation key is cached
// only for senders the remote signer serves (cache), so that strangers cannot churn the cache.
func (s *RemoteSigner) decrypt(ev *nostr.Event, cache bool) (transport, string, error) {
	var ck [32]byte
	var err error
	if cache {
		ck, err = s.conversationKey(ev.PubKey)
	} else {
		ck, err = nip44.GenerateConversationKey(ev.PubKey, s.sk)
	}
	if err != nil {
		return transport{}, "", fmt.Errorf("bad client pubkey: %w", err)
	}
	t := transport{client: ev.PubKey, ck: ck}
	plain, err := nip44.Decrypt(ev.Content, ck)
	if err == nil {
		return t, plain, nil
	}
	if !s.legacyNIP04 || !strings.Contains(ev.Content, "?iv=") {
		return t, "", fmt.Errorf("not NIP-44 v2 decryptable (NIP-04 transport needs the legacy mode): %w", err)
	}
	shared, serr := nip04.ComputeSharedSecret(ev.PubKey, s.sk)
	if serr != nil {
		return t, "", serr
	}
	if plain, err = nip04Decrypt(ev.Content, shared); err != nil {
		return t, "", fmt.Errorf("not NIP-04 decryptable: %w", err)
	}
	t.nip04 = true
	return t, plain, nil
}

// handleEvent is handle for an event that did not come out of a relaypool subscription (its
// signature is checked here).
func (s *RemoteSigner) handleEvent(ctx context.Context, ev *nostr.Event, relay string) {
	s.handle(ctx, relaypool.Event{Event: ev, Relay: relay})
}

// handle checks, decrypts and answers one event. Anything it cannot attribute to a client
// request (bad signature, not for us, undecryptable) is logged and dropped: there is no one to
// answer safely. Events from pubkeys without a session are filtered in memory (handleStranger)
// before anything is written: only a connect carrying a usable secret goes on.
func (s *RemoteSigner) handle(ctx context.Context, in relaypool.Event) {
	ev, relay := in.Event, in.Relay
	log := s.log.With("event", ev.ID, "client", ev.PubKey, "relay", relay)
	if reason := s.checkEvent(ev); reason != "" {
		if reason != "our own event" {
			log.Debug("dropped event: " + reason)
			s.drops.invalid.Add(1)
		}
		return
	}
	ctx, known, err := s.isClient(ctx, ev.PubKey)
	if err != nil {
		log.Error("dropped event: cannot read the client's session", "error", err)
		return
	}
	if !known {
		s.handleStranger(ctx, in, log)
		return
	}
	s.handleClient(ctx, in, log)
}

// handleClient takes an event from a client (a pubkey with a session, or a nostrconnect app
// awaited) past its rate limit and the durable replay check, decrypts it and serves it. Over the
// limit it is answered rate_limited at most once a second, and dropped otherwise.
func (s *RemoteSigner) handleClient(ctx context.Context, in relaypool.Event, log *slog.Logger) {
	ev, relay := in.Event, in.Relay
	if reason := s.checkAuthentic(in); reason != "" {
		log.Debug("dropped event: " + reason)
		s.drops.invalid.Add(1)
		return
	}
	allowed, answerLimit := s.limits.allowClient(ev.PubKey, s.now())
	if !allowed && !answerLimit {
		s.drops.overLimit.Add(1)
		return
	}
	if allowed && !s.firstDurably(ctx, ev, log) {
		return
	}
	t, plain, err := s.decrypt(ev, true)
	if err != nil {
		log.Warn("dropped event", "error", err)
		return
	}
	s.serveRequest(ctx, ev, relay, t, plain, !allowed, log)
}

// firstDurably records ev in the durable replay set (when the Sessions have one) and reports
// whether it was not handled before, also before a restart.
//
// A failed check is tried again (growing delays from replayRetryMin to replayRetryMax) while ctx
// lasts and ev is within MaxClockSkew of now: the event is already marked in the in-memory set
// and the pools have de-duplicated its copies from the other relays, so giving up on a
// transient failure (SQLite "database is locked" when writers contend past the busy timeout)
// would leave a request that the relays accepted without any answer.
func (s *RemoteSigner) firstDurably(ctx context.Context, ev *nostr.Event, log *slog.Logger) bool {
	durable, ok := s.sessions.(SeenEvents)
	if !ok {
		return true
	}
	delay := replayRetryMin
	for attempt := 1; ; attempt++ {
		first, err := durable.FirstSeenEvent(ctx, ev.ID, s.now(), s.seen.ttl)
		if err == nil {
			if !first {
				log.Warn("dropped event: already handled before a restart (replayed)")
			}
			return first
		}
		if ctx.Err() != nil || s.now().Sub(ev.CreatedAt.Time()) > MaxClockSkew {
			log.Error("dropped event: the replay check failed", "error", err, "attempts", attempt)
			return false
		}
		log.Warn("the replay check failed; trying again", "error", err, "attempt", attempt, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(2*delay, replayRetryMax)
	}
}

// The delays between attempts of a failed durable replay check (firstDurably).
const (
	replayRetryMin = 50 * time.Millisecond
	replayRetryMax = 2 * time.Second
)

// serveRequest answers one decrypted request from a client (or from a stranger whose connect
// carries a usable secret). limited: the client is over its rate limit (answered rate_limited).
func (s *RemoteSigner) serveRequest(ctx context.Context, ev *nostr.Event, relay string, t transport, plain string, limited bool, log *slog.Logger) {
	if nip46.IsResponse(plain) {
		// A NIP-46 response p-tagged to our key: the answer to a request our own NIP-46 client
		// sent under this key (a co-signer asking its peers); that client's subscription reads
		// it. Answering it with an error would start an endless exchange with the peer's signer.
		log.Debug("ignored a NIP-46 response addressed to this key's client")
		return
	}
	id, method, params, perr := nip46.ParseRequest(plain)
	if id == "" {
		log.Warn("dropped request without an id", "error", perr)
		return
	}
	s.noteRequest(ctx, ev.PubKey, t, log)
	log = log.With("id", truncate(id, 64), "method", truncate(method, 64))
	req := nip46.Call{Client: ev.PubKey, ID: id, Method: method, Params: params, EventID: ev.ID}
	if nip46.NeedsPermission(method) {
		// Only a method with a handler can keep the evidence; the session methods (ping,
		// connect, …) are answered in dispatch and never reach one.
		req.Event = eventJSON(ev, log)
	}
	result, err := s.answer(ctx, req, perr, limited, log)
	log = log.With("took", handlingTime(ctx))
	resp, ok := s.response(ctx, req, relay, t, result, err, log)
	if !ok {
		return
	}
	out, rerr := s.responseEvent(t, resp)
	if rerr == nil {
		done := s.awaitRelays(ctx)
		rerr = s.publish(ctx, out, t.client, relay)
		done()
	}
	if rerr != nil {
		log.Error("could not deliver the response to any relay", "error", rerr)
	}
	if err == nil && perr == nil && !limited {
		s.afterSessionMethod(ctx, req, log)
	}
}

// noteRequest records what a request says about its client: the transport it speaks (legacy
// NIP-04 clients are remembered, at most maxLegacyClients, for late answers), one more request
// in its activity, and, for a nostrconnect app, that its connect response arrived (its first
// request proves it).
func (s *RemoteSigner) noteRequest(ctx context.Context, client string, t transport, log *slog.Logger) {
	if t.nip04 {
		s.clientLegacy.Add(client, struct{}{})
	} else {
		s.clientLegacy.Remove(client)
	}
	s.clientMu.Lock()
	awaiting := s.awaiting[client]
	delete(s.awaiting, client)
	s.clientMu.Unlock()
	s.noteActivity(client)
	if !awaiting {
		return
	}
	if ok, err := s.sessions.ConfirmNostrConnect(ctx, client); err != nil {
		log.Error("cannot record the nostrconnect confirmation", "error", err)
	} else if ok {
		log.Info("nostrconnect: the app's first request arrived; connect response confirmed")
	}
}

// answer runs req's method, unless the request is malformed (perr, answered invalid_request)
// or over the client's rate limit (answered rate_limited).
func (s *RemoteSigner) answer(ctx context.Context, req nip46.Call, perr error, limited bool, log *slog.Logger) (string, error) {
	switch {
	case perr != nil:
		return "", perr
	case limited:
		return "", nip46.Errorf(nip46.CodeRateLimited, "too many requests from this client; retry later")
	}
	return s.safeDispatch(ctx, req, log)
}

// response turns a method's outcome into its NIP-46 response: the result; auth_url with the URL
// for a held request (NIP-46 "Auth Challenges"; the request's transport and relay are recorded
// for the late answer); or the error's wire form "<code>: <message>" (AsMethodError: anything
// but a *MethodError is "internal"). ok is false when the request gets no answer at all (a
// stranger's connect whose secret turned out unusable).
func (s *RemoteSigner) response(ctx context.Context, req nip46.Call, relay string, t transport, result string, err error, log *slog.Logger) (resp nip46.Response, ok bool) {
	resp = nip46.Response{ID: req.ID}
	var held *nip46.HeldError
	switch {
	case errors.Is(err, errUnanswered):
		log.Debug("dropped request", "error", err)
		return resp, false
	case errors.As(err, &held):
		resp.Result, resp.Error = nip46.ResultAuthURL, held.URL
		tr := session.TransportNIP44
		if t.nip04 {
			tr = session.TransportNIP04
		}
		if serr := s.sessions.SaveRequestTransport(ctx, req.Client, req.ID, tr, relay); serr != nil {
			log.Error("cannot record the held request's transport; its late answer uses the client's last one", "error", serr)
		}
		log.Info("answered auth_url (held)", "reason", held.Reason)
	case err != nil:
		merr := nip46.AsMethodError(err)
		if merr.Code == nip46.CodeInternal {
			log.Error("request failed", "error", err)
		}
		resp.Error = merr.Error()
		log.Info("answered with error", "error", resp.Error)
	default:
		resp.Result = result
		log.Info("answered")
	}
	return resp, true
}

// afterSessionMethod applies what logout and switch_relays change once their response is out
// (the response itself still went to the client's old relays; NIP-46 asks for logout's "ack"
// before the session is removed).
func (s *RemoteSigner) afterSessionMethod(ctx context.Context, req nip46.Call, log *slog.Logger) {
	switch req.Method {
	case nip46.MethodLogout:
		if err := s.sessions.EndSession(ctx, req.Client); err != nil {
			log.Error("cannot end the session after logout", "error", err)
			return
		}
		s.audit(ctx, req, "logout", "", "session ended by the client")
		s.releaseClientRelays(req.Client)
	case nip46.MethodSwitchRelays:
		s.clientMu.Lock()
		had := len(s.clientRelays[req.Client]) > 0
		s.clientMu.Unlock()
		if !had {
			return
		}
		// The client now uses the relays we answered (our pool's); its own are no longer needed.
		if err := s.sessions.SetSessionRelays(ctx, req.Client, nil); err != nil && !errors.Is(err, session.ErrNoSession) {
			log.Error("cannot record the client's switch to our relays", "error", err)
			return
		}
		s.releaseClientRelays(req.Client)
		log.Info("client switched to the remote signer's relays")
	}
}

// seenIDs remembers handled event ids for ttl (replay protection independent of the pools'
// own de-duplication, which is per pool), at most size of them: past that the least recently
// added is forgotten. Safe for concurrent use.
type seenIDs struct {
	ttl  time.Duration
	seen *lru.Cache[string, time.Time]
}

func newSeenIDs(ttl time.Duration, size int) *seenIDs {
	return &seenIDs{ttl: ttl, seen: mustLRU[time.Time](size)}
}

// first records id at now and reports whether it was not seen within ttl.
func (s *seenIDs) first(id string, now time.Time) bool {
	prev, ok, _ := s.seen.PeekOrAdd(id, now) // one step: of two copies at once, one is first
	if !ok {
		return true
	}
	if now.Sub(prev) < s.ttl {
		return false
	}
	s.seen.Add(id, now) // seen long ago: a new first sighting
	return true
}

func param(ps []string, i int) string {
	if i < len(ps) {
		return ps[i]
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// eventJSON is ev in its NIP-01 JSON form, the evidence a handler may keep (nip46.Call.Event);
// nil if it cannot be encoded (logged).
func eventJSON(ev *nostr.Event, log *slog.Logger) json.RawMessage {
	b, err := json.Marshal(ev)
	if err != nil {
		log.Warn("cannot encode the request event as evidence", "error", err)
		return nil
	}
	return b
}
