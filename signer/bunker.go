package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// KindNostrConnect is the NIP-46 event kind for requests and responses.
const KindNostrConnect = 24133

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

// Request is a decoded NIP-46 request from an authenticated, connected client.
type Request struct {
	Client  string // client pubkey, hex
	ID      string // the client's request id
	Method  string
	Params  []string
	EventID string // id of the kind-24133 event that carried it
	// Event is that kind-24133 event itself, signature checked: the client's Nostr signature
	// over this request (kept as evidence, e.g. for approvals). Nil in tests that call handlers
	// directly.
	Event *nostr.Event
}

// HandlerFunc answers one NIP-46 method: a non-empty result string, or an error (a *MethodError
// is answered as is, a *HeldError as auth_url, anything else as "internal: …").
type HandlerFunc func(ctx context.Context, req Request) (string, error)

// PSBTHandler decides and signs sign_psbt requests (psbtflow). It returns the result string or
// an error; errors that are not *MethodError are answered as "internal: …".
type PSBTHandler interface {
	SignPSBT(ctx context.Context, req Request) (string, error)
}

// Sessions is the durable session state (satisfied by *store.DB).
type Sessions interface {
	UseConnectSecret(ctx context.Context, secret, client, requested, metadata string, grant store.GrantFunc) (string, error)
	SessionPerms(ctx context.Context, client string) (perms string, ok bool, err error)
	// ConnectSecretUsable reports whether secret would open a session for client (known and
	// unused, or used by client itself), without writing anything.
	ConnectSecretUsable(ctx context.Context, secret, client string) (bool, error)
	ListSessions(ctx context.Context) ([]store.ClientSession, error)
	EndSession(ctx context.Context, client string) error
	SetSessionRelays(ctx context.Context, client string, relays []string) error
	RecordActivity(ctx context.Context, act map[string]store.ClientActivity) error
	AppendAudit(ctx context.Context, a store.AuditEntry) error
	PendingNostrConnects(ctx context.Context) ([]store.NostrConnect, error)
	NostrConnectSent(ctx context.Context, client, responseID string, at, next time.Time) error
	ConfirmNostrConnect(ctx context.Context, client string) (bool, error)
	FinishNostrConnect(ctx context.Context, client, state, errMsg string) error
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
	activity      map[string]store.ClientActivity
	runCtx        context.Context
	filter        nostr.Filter
	nostrConnects chan struct{}

	sem chan struct{}
	wg  sync.WaitGroup
}

// NewRemoteSigner returns a remote signer for the Nostr identity key sk (hex) that serves over
// pool, keeps sessions in sessions, and passes sign_psbt to psbt (nil: sign_psbt is not offered).
func NewRemoteSigner(sk string, pool RelayPool, sessions Sessions, psbt PSBTHandler, log *slog.Logger, opts ...Option) (*RemoteSigner, error) {
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nil, fmt.Errorf("signer: bad Nostr secret key: %w", ErrNotOurKey)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &RemoteSigner{
		sk: sk, pk: pk, pool: pool, sessions: sessions,
		log: log.With("component", "signer"), now: time.Now,
		limits:        newRateLimits(DefaultRatePerSecond, DefaultRateBurst),
		handlers:      make(map[string]HandlerFunc),
		conv:          mustLRU[[32]byte](maxConversationKeys),
		seen:          newSeenIDs(ReplayWindow, maxSeenEvents),
		clientLegacy:  mustLRU[struct{}](maxLegacyClients),
		clientRelays:  make(map[string][]string),
		extra:         make(map[string]*extraPool),
		awaiting:      make(map[string]bool),
		activity:      make(map[string]store.ClientActivity),
		idle:          DefaultClientRelayIdle,
		sem:           make(chan struct{}, 16),
		nostrConnects: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	s.registerBuiltins()
	if psbt != nil {
		s.handlers["sign_psbt"] = psbt.SignPSBT
	}
	return s, nil
}

// PublicKey is the remote signer's pubkey (hex); it is also the user pubkey.
func (s *RemoteSigner) PublicKey() string { return s.pk }

// Handle registers h for method (an extension method such as psbt_status or approve, or a
// replacement of a built-in one except the session methods). Call it before Run. A connected
// client needs the permission named method to call it. Errors: the method name is malformed
// or a session method.
func (s *RemoteSigner) Handle(method string, h HandlerFunc) error {
	if !validMethodName(method) || !NeedsPermission(method) || h == nil {
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
	s.filter = nostr.Filter{Kinds: []int{KindNostrConnect}, Tags: nostr.TagMap{"p": []string{s.pk}}, Since: &since}
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
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				used()
				select {
				case s.sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer func() { <-s.sem }()
					defer s.recoverEvent(ev.Event)
					s.handleEvent(withArrival(ctx, ev.Received), ev.Event, ev.Relay)
				}()
			}
		}
	}()
	if label != "" {
		s.log.Info("listening on a client's relay", "relay", label)
	}
}

// setClientRelays records client's own relays and opens (and serves) those outside the pool.
// It is called from goroutines owned by Run (or before Run starts serving).
func (s *RemoteSigner) setClientRelays(client string, relays []string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	s.clientRelays[client] = slices.Clone(relays)
	if s.dial == nil || s.runCtx == nil || s.runCtx.Err() != nil {
		return
	}
	for _, u := range relays {
		if slices.Contains(s.pool.URLs(), u) || s.extra[u] != nil {
			continue
		}
		if len(s.extra) >= MaxClientRelays {
			s.log.Warn("too many client relays; not opening another", "relay", u, "max", MaxClientRelays)
			return
		}
		p, err := s.dial([]string{u})
		if err != nil {
			s.log.Warn("cannot use a client's relay", "relay", u, "error", err)
			continue
		}
		pctx, cancel := context.WithCancel(s.runCtx)
		s.extra[u] = &extraPool{pool: p, cancel: cancel, lastUsed: s.now()}
		s.serveWith(pctx, s.filter, p, u)
	}
}

// extraPool is a pool the remote signer opened on one client relay.
type extraPool struct {
	pool     ClosablePool
	cancel   context.CancelFunc // ends its subscription
	lastUsed time.Time          // last event from it or response to it
}

func (e *extraPool) close() {
	e.cancel()
	e.pool.Close()
}

func (s *RemoteSigner) touchExtra(u string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if e := s.extra[u]; e != nil {
		e.lastUsed = s.now()
	}
}

// ClientRelayPools returns the relay URLs the remote signer has a pool open on for clients (its
// own relays not included), sorted.
func (s *RemoteSigner) ClientRelayPools() []string {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	out := make([]string, 0, len(s.extra))
	for u := range s.extra {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// releaseClientRelays forgets client's own relays (logout, switch_relays, a session that is
// gone) and closes the pools no other client uses.
func (s *RemoteSigner) releaseClientRelays(clients ...string) {
	s.clientMu.Lock()
	for _, c := range clients {
		delete(s.clientRelays, c)
		delete(s.awaiting, c)
	}
	closing := s.unusedExtraLocked(func(u string, e *extraPool) bool {
		for _, rs := range s.clientRelays {
			if slices.Contains(rs, u) {
				return false
			}
		}
		return true
	})
	s.clientMu.Unlock()
	s.closePools(closing)
}

// closeIdle closes the client-relay pools unused for longer than the idle limit.
func (s *RemoteSigner) closeIdle() {
	if s.idle <= 0 {
		return
	}
	now := s.now()
	s.clientMu.Lock()
	closing := s.unusedExtraLocked(func(_ string, e *extraPool) bool { return now.Sub(e.lastUsed) > s.idle })
	s.clientMu.Unlock()
	s.closePools(closing)
}

// unusedExtraLocked removes from s.extra the pools drop selects and returns them (caller holds
// clientMu; it closes them after unlocking).
func (s *RemoteSigner) unusedExtraLocked(drop func(u string, e *extraPool) bool) map[string]*extraPool {
	out := map[string]*extraPool{}
	for u, e := range s.extra {
		if drop(u, e) {
			out[u] = e
			delete(s.extra, u)
		}
	}
	return out
}

func (s *RemoteSigner) closePools(ps map[string]*extraPool) {
	for u, e := range ps {
		e.close()
		s.log.Info("closed a client's relay", "relay", u)
	}
}

// syncSessions releases the relays of clients whose session is gone (for example ended with
// `cosigner clients revoke` while the daemon runs).
func (s *RemoteSigner) syncSessions(ctx context.Context) {
	ss, err := s.sessions.ListSessions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot read client sessions", "error", err)
		}
		return
	}
	live := map[string]bool{}
	for _, c := range ss {
		live[c.Client] = true
	}
	var gone []string
	s.clientMu.Lock()
	for c := range s.clientRelays {
		if !live[c] {
			gone = append(gone, c)
		}
	}
	s.clientMu.Unlock()
	if len(gone) > 0 {
		s.releaseClientRelays(gone...)
	}
}

// noteActivity counts one request from client (flushed by flushActivity).
func (s *RemoteSigner) noteActivity(client string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	a, ok := s.activity[client]
	if !ok && len(s.activity) >= maxActivityClients {
		return
	}
	a.Requests++
	a.LastSeen = s.now()
	s.activity[client] = a
}

func (s *RemoteSigner) flushActivity(ctx context.Context) {
	s.clientMu.Lock()
	act := s.activity
	s.activity = make(map[string]store.ClientActivity)
	s.clientMu.Unlock()
	if err := s.sessions.RecordActivity(ctx, act); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot record client activity", "error", err)
	}
}

func (s *RemoteSigner) closeExtra() {
	s.clientMu.Lock()
	all := s.unusedExtraLocked(func(string, *extraPool) bool { return true })
	s.clientMu.Unlock()
	for _, e := range all {
		e.close()
	}
}

// targets returns where a response to client goes besides the main pool's relays: the pools
// opened on the client's own relays (and on the relay its request arrived on), and the client
// relays that have no such pool (no PoolDialer, or MaxClientRelays reached).
func (s *RemoteSigner) targets(client, arrivedOn string) (pools []RelayPool, other []string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	seen := map[string]bool{}
	for _, u := range s.pool.URLs() {
		seen[u] = true
	}
	for _, u := range append(slices.Clone(s.clientRelays[client]), arrivedOn) {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		if e := s.extra[u]; e != nil {
			e.lastUsed = s.now()
			pools = append(pools, e.pool)
		} else if s.clientRelaysKnown(client, u) {
			other = append(other, u)
		}
	}
	return pools, other
}

// clientRelaysKnown reports whether u is one of client's recorded relays (callers hold clientMu).
func (s *RemoteSigner) clientRelaysKnown(client, u string) bool {
	return slices.Contains(s.clientRelays[client], u)
}

// PublisherTo is a RelayPool that can also publish to relays outside itself
// (relaypool.Pool.PublishTo); the remote signer uses it for a client's relays it has no pool on.
type PublisherTo interface {
	PublishTo(ctx context.Context, ev nostr.Event, urls []string) []relaypool.PublishResult
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

type wireRequest struct {
	ID     string          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type wireResponse struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
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
	case ev.Kind != KindNostrConnect || !ev.Tags.ContainsAny("p", []string{s.pk}):
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

// checkAuthentic checks ev's id and BIP-340 signature (NIP-01) and records it in the replay
// set; a non-empty reason means drop it. It runs before an event can cost a durable write or
// an answer: at once for clients' events, and for a stranger's only once its content turned
// out a connect with a usable secret (see stranger.go).
func (s *RemoteSigner) checkAuthentic(ev *nostr.Event) string {
	if ok, err := ev.CheckSignature(); !ok || err != nil {
		return "invalid signature or id"
	}
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

// IsResponse reports whether a decrypted NIP-46 payload is a response ({"id","result","error"}
// without "method"), not a request.
func IsResponse(plain string) bool {
	var m struct {
		Method *string          `json:"method"`
		Result *json.RawMessage `json:"result"`
		Error  *json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(plain), &m) != nil {
		return false
	}
	return m.Method == nil && (m.Result != nil || m.Error != nil)
}

// ParseRequest decodes a NIP-46 request payload {"id","method","params":[strings]}. It returns
// the id even when the rest is malformed (so the error can be answered); an empty id means the
// payload cannot be answered at all. Errors are *MethodError (invalid_request).
func ParseRequest(plain string) (id, method string, params []string, err error) {
	var wr wireRequest
	if jerr := json.Unmarshal([]byte(plain), &wr); jerr != nil {
		// A payload that is JSON with a string id but wrong elsewhere is still answered.
		var idOnly struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(plain), &idOnly)
		return idOnly.ID, "", nil, Errorf(CodeInvalidRequest, "not a NIP-46 request object")
	}
	if wr.ID == "" {
		return "", wr.Method, nil, Errorf(CodeInvalidRequest, "missing id")
	}
	if len(wr.ID) > 128 {
		return "", wr.Method, nil, Errorf(CodeInvalidRequest, "id longer than 128 characters")
	}
	if err := decodeParams(wr.Params, &params); err != nil {
		return wr.ID, wr.Method, nil, Errorf(CodeInvalidRequest, "%v", err)
	}
	if wr.Method == "" {
		return wr.ID, "", params, Errorf(CodeInvalidRequest, "missing method")
	}
	return wr.ID, wr.Method, params, nil
}

// handleEvent checks, decrypts and answers one event. Anything it cannot attribute to a
// client request (bad signature, not for us, undecryptable) is logged and dropped: there is no
// one to answer safely. Events from pubkeys without a session are filtered in memory
// (handleStranger) before anything is written: only a connect carrying a usable secret goes on.
func (s *RemoteSigner) handleEvent(ctx context.Context, ev *nostr.Event, relay string) {
	log := s.log.With("event", ev.ID, "client", ev.PubKey, "relay", relay)
	if reason := s.checkEvent(ev); reason != "" {
		if reason != "our own event" {
			log.Debug("dropped event: " + reason)
			s.drops.invalid.Add(1)
		}
		return
	}
	known, err := s.isClient(ctx, ev.PubKey)
	if err != nil {
		log.Error("dropped event: cannot read the client's session", "error", err)
		return
	}
	if !known {
		s.handleStranger(ctx, ev, relay, log)
		return
	}
	if reason := s.checkAuthentic(ev); reason != "" {
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
func (s *RemoteSigner) firstDurably(ctx context.Context, ev *nostr.Event, log *slog.Logger) bool {
	durable, ok := s.sessions.(SeenEvents)
	if !ok {
		return true
	}
	first, err := durable.FirstSeenEvent(ctx, ev.ID, s.now(), s.seen.ttl)
	if err != nil {
		log.Error("dropped event: the replay check failed", "error", err)
		return false
	}
	if !first {
		log.Warn("dropped event: already handled before a restart (replayed)")
	}
	return first
}

// serveRequest answers one decrypted request from a client (or from a stranger whose connect
// carries a usable secret). limited: the client is over its rate limit (answered rate_limited).
func (s *RemoteSigner) serveRequest(ctx context.Context, ev *nostr.Event, relay string, t transport, plain string, limited bool, log *slog.Logger) {
	if IsResponse(plain) {
		// A NIP-46 response p-tagged to our key: the answer to a request our own NIP-46 client
		// sent under this key (a co-signer asking its peers); that client's subscription reads
		// it. Answering it with an error would start an endless exchange with the peer's signer.
		log.Debug("ignored a NIP-46 response addressed to this key's client")
		return
	}
	id, method, params, perr := ParseRequest(plain)
	if id == "" {
		log.Warn("dropped request without an id", "error", perr)
		return
	}
	if t.nip04 { // only legacy clients are remembered (for Respond), at most maxLegacyClients
		s.clientLegacy.Add(ev.PubKey, struct{}{})
	} else {
		s.clientLegacy.Remove(ev.PubKey)
	}
	s.clientMu.Lock()
	awaiting := s.awaiting[ev.PubKey]
	delete(s.awaiting, ev.PubKey)
	s.clientMu.Unlock()
	s.noteActivity(ev.PubKey)
	if awaiting {
		// A request from the app proves it got the nostrconnect connect response.
		if ok, err := s.sessions.ConfirmNostrConnect(ctx, ev.PubKey); err != nil {
			log.Error("cannot record the nostrconnect confirmation", "error", err)
		} else if ok {
			log.Info("nostrconnect: the app's first request arrived; connect response confirmed")
		}
	}
	log = log.With("id", truncate(id, 64), "method", truncate(method, 64))
	req := Request{Client: ev.PubKey, ID: id, Method: method, Params: params, EventID: ev.ID, Event: ev}
	resp := wireResponse{ID: id}
	var result string
	var err error
	switch {
	case perr != nil:
		err = perr
	case limited:
		err = Errorf(CodeRateLimited, "too many requests from this client; retry later")
	default:
		result, err = s.safeDispatch(ctx, req, log)
	}
	log = log.With("took", handlingTime(ctx))
	var held *HeldError
	switch {
	case errors.Is(err, errUnanswered):
		log.Debug("dropped request", "error", err)
		return
	case errors.As(err, &held):
		resp.Result, resp.Error = "auth_url", held.URL
		tr := store.TransportNIP44
		if t.nip04 {
			tr = store.TransportNIP04
		}
		if serr := s.sessions.SaveRequestTransport(ctx, ev.PubKey, id, tr, relay); serr != nil {
			log.Error("cannot record the held request's transport; its late answer uses the client's last one", "error", serr)
		}
		log.Info("answered auth_url (held)", "reason", held.Reason)
	case err != nil:
		merr := AsMethodError(err)
		if merr.Code == CodeInternal {
			log.Error("request failed", "error", err)
		}
		resp.Error = merr.Error()
		log.Info("answered with error", "error", resp.Error)
	default:
		resp.Result = result
		log.Info("answered")
	}
	if err := s.reply(ctx, t, relay, resp); err != nil {
		log.Error("could not deliver the response to any relay", "error", err)
	}
	if err == nil && perr == nil && !limited {
		s.afterSessionMethod(ctx, req, log)
	}
}

// afterSessionMethod applies what logout and switch_relays change once their response is out
// (the response itself still went to the client's old relays; NIP-46 asks for logout's "ack"
// before the session is removed).
func (s *RemoteSigner) afterSessionMethod(ctx context.Context, req Request, log *slog.Logger) {
	switch req.Method {
	case "logout":
		if err := s.sessions.EndSession(ctx, req.Client); err != nil {
			log.Error("cannot end the session after logout", "error", err)
			return
		}
		s.audit(ctx, req, "logout", "", "session ended by the client")
		s.releaseClientRelays(req.Client)
	case "switch_relays":
		s.clientMu.Lock()
		had := len(s.clientRelays[req.Client]) > 0
		s.clientMu.Unlock()
		if !had {
			return
		}
		// The client now uses the relays we answered (our pool's); its own are no longer needed.
		if err := s.sessions.SetSessionRelays(ctx, req.Client, nil); err != nil && !errors.Is(err, store.ErrNoSession) {
			log.Error("cannot record the client's switch to our relays", "error", err)
			return
		}
		s.releaseClientRelays(req.Client)
		log.Info("client switched to the remote signer's relays")
	}
}

func decodeParams(raw json.RawMessage, out *[]string) error {
	if len(raw) == 0 || string(raw) == "null" {
		*out = nil
		return nil
	}
	var anyParams []any
	if err := json.Unmarshal(raw, &anyParams); err != nil {
		return errors.New("params must be a JSON array")
	}
	ps := make([]string, len(anyParams))
	for i, p := range anyParams {
		str, ok := p.(string)
		if !ok {
			return fmt.Errorf("params[%d] must be a string", i)
		}
		ps[i] = str
	}
	*out = ps
	return nil
}

// reply encrypts resp for the client and publishes it to the pool and to the client's own
// relays (and the relay the request came on, if outside the pool).
func (s *RemoteSigner) reply(ctx context.Context, t transport, arrivedOn string, resp wireResponse) error {
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
		Kind:      KindNostrConnect,
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

// Respond delivers the late answer to a request that was answered with auth_url (Responder):
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
		legacy, arrivedOn = tr == store.TransportNIP04, on
	}
	resp := wireResponse{ID: requestID, Result: result}
	if err != nil {
		resp.Result, resp.Error = "", AsMethodError(err).Error()
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

var _ Responder = (*RemoteSigner)(nil)

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
