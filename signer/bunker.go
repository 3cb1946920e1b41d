package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
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
)

// RelayPool is what the remote signer needs from the relays (satisfied by *relaypool.Pool).
type RelayPool interface {
	Subscribe(ctx context.Context, filter nostr.Filter) <-chan relaypool.Event
	Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult
	URLs() []string
}

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

// PSBTHandler decides and signs sign_psbt requests (psbtflow). It returns the result string or
// an error; errors that are not *MethodError are answered as "internal: …".
type PSBTHandler interface {
	SignPSBT(ctx context.Context, req Request) (string, error)
}

// Sessions is the durable session state (satisfied by *store.DB).
type Sessions interface {
	UseConnectSecret(ctx context.Context, secret, client, perms, metadata string) error
	ClientConnected(ctx context.Context, client string) (bool, error)
	EndSession(ctx context.Context, client string) error
	AppendAudit(ctx context.Context, a store.AuditEntry) error
}

// RemoteSigner is the NIP-46 remote signer (bunker). Create it with NewRemoteSigner and call Run.
type RemoteSigner struct {
	sk, pk   string
	pool     RelayPool
	sessions Sessions
	psbt     PSBTHandler
	log      *slog.Logger
	now      func() time.Time

	convMu sync.Mutex
	conv   map[string][32]byte // conversation keys by client pubkey

	sem chan struct{}
	wg  sync.WaitGroup
}

// NewRemoteSigner returns a remote signer for the Nostr identity key sk (hex) that serves over
// pool, keeps sessions in sessions, and passes sign_psbt to psbt.
func NewRemoteSigner(sk string, pool RelayPool, sessions Sessions, psbt PSBTHandler, log *slog.Logger) (*RemoteSigner, error) {
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nil, fmt.Errorf("signer: bad Nostr secret key: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &RemoteSigner{
		sk: sk, pk: pk, pool: pool, sessions: sessions, psbt: psbt,
		log: log.With("component", "signer"), now: time.Now,
		conv: make(map[string][32]byte), sem: make(chan struct{}, 16),
	}, nil
}

// PublicKey is the remote signer's pubkey (hex); it is also the user pubkey.
func (s *RemoteSigner) PublicKey() string { return s.pk }

// BunkerURI builds "bunker://<remote-signer-pubkey>?relay=…&relay=…&secret=…" (NIP-46).
func BunkerURI(remoteSignerPubKey string, relays []string, secret string) string {
	q := url.Values{}
	for _, r := range relays {
		q.Add("relay", r)
	}
	if secret != "" {
		q.Set("secret", secret)
	}
	return "bunker://" + remoteSignerPubKey + "?" + q.Encode()
}

// Run subscribes to kind-24133 events p-tagged to this signer on every relay and answers them
// until ctx is done; it then waits for requests in flight to be answered.
func (s *RemoteSigner) Run(ctx context.Context) error {
	since := nostr.Timestamp(s.now().Add(-MaxClockSkew).Unix())
	events := s.pool.Subscribe(ctx, nostr.Filter{
		Kinds: []int{KindNostrConnect},
		Tags:  nostr.TagMap{"p": []string{s.pk}},
		Since: &since,
	})
	s.log.Info("remote signer listening", "pubkey", s.pk, "relays", s.pool.URLs())
	defer s.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			select {
			case s.sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.sem }()
				s.handleEvent(ctx, ev.Event, ev.Relay)
			}()
		}
	}
}

func (s *RemoteSigner) conversationKey(client string) ([32]byte, error) {
	s.convMu.Lock()
	defer s.convMu.Unlock()
	if k, ok := s.conv[client]; ok {
		return k, nil
	}
	k, err := nip44.GenerateConversationKey(client, s.sk)
	if err != nil {
		return k, err
	}
	if len(s.conv) > 10000 {
		clear(s.conv)
	}
	s.conv[client] = k
	return k, nil
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

// handleEvent checks, decrypts and answers one event. Anything it cannot attribute to a
// client request (bad signature, not for us, undecryptable) is logged and dropped: there is no
// one to answer safely.
func (s *RemoteSigner) handleEvent(ctx context.Context, ev *nostr.Event, relay string) {
	log := s.log.With("event", ev.ID, "client", ev.PubKey, "relay", relay)
	if ev.Kind != KindNostrConnect || !ev.Tags.ContainsAny("p", []string{s.pk}) {
		log.Warn("dropped event: not a NIP-46 request for this signer")
		return
	}
	if ok, err := ev.CheckSignature(); !ok || err != nil {
		log.Warn("dropped event: invalid signature or id")
		return
	}
	if ev.PubKey == s.pk {
		return // our own response echoed back
	}
	if d := s.now().Sub(ev.CreatedAt.Time()); d > MaxClockSkew || d < -MaxClockSkew {
		log.Warn("dropped event: created_at too far from now (replay or bad clock)", "created_at", ev.CreatedAt)
		return
	}
	if len(ev.Content) > MaxContentBytes {
		log.Warn("dropped event: content too large", "bytes", len(ev.Content))
		return
	}
	ck, err := s.conversationKey(ev.PubKey)
	if err != nil {
		log.Warn("dropped event: bad client pubkey", "error", err)
		return
	}
	plain, err := nip44.Decrypt(ev.Content, ck)
	if err != nil {
		log.Warn("dropped event: not NIP-44 v2 decryptable (NIP-04 transport is not supported)", "error", err)
		return
	}
	var wr wireRequest
	if err := json.Unmarshal([]byte(plain), &wr); err != nil || wr.ID == "" {
		log.Warn("request is not a NIP-46 JSON-RPC object with an id", "error", err)
		if wr.ID == "" {
			return
		}
	}
	req := Request{Client: ev.PubKey, ID: wr.ID, Method: wr.Method, EventID: ev.ID, Event: ev}
	var result string
	var merr *MethodError
	if err := decodeParams(wr.Params, &req.Params); err != nil {
		merr = Errorf(CodeInvalidRequest, "%v", err)
	} else {
		log = log.With("id", wr.ID, "method", wr.Method)
		result, err = s.dispatch(ctx, req)
		if err != nil {
			merr = AsMethodError(err)
			if merr.Code == CodeInternal {
				log.Error("request failed", "error", err)
			}
		}
	}
	resp := wireResponse{ID: wr.ID, Result: result}
	if merr != nil {
		resp.Result, resp.Error = "", merr.Error()
		log.Info("answered with error", "error", resp.Error)
	} else {
		log.Info("answered")
	}
	if err := s.reply(ctx, ev.PubKey, ck, resp); err != nil {
		log.Error("could not deliver the response to any relay", "error", err)
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

func (s *RemoteSigner) reply(ctx context.Context, client string, ck [32]byte, resp wireResponse) error {
	body, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	content, err := nip44.Encrypt(string(body), ck)
	if err != nil {
		return err
	}
	ev := nostr.Event{
		PubKey:    s.pk,
		CreatedAt: nostr.Now(),
		Kind:      KindNostrConnect,
		Tags:      nostr.Tags{{"p", client}},
		Content:   content,
	}
	if err := ev.Sign(s.sk); err != nil {
		return err
	}
	// Publishing must finish even while shutting down: the request was acknowledged.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	n, err := relaypool.Published(s.pool.Publish(pctx, ev))
	if n == 0 {
		return err
	}
	if err != nil {
		s.log.Warn("response not accepted by every relay", "accepted", n, "error", err)
	}
	return nil
}

// dispatch runs one method. Every method except connect needs a session.
func (s *RemoteSigner) dispatch(ctx context.Context, req Request) (string, error) {
	if req.Method == "connect" {
		return s.connect(ctx, req)
	}
	ok, err := s.sessions.ClientConnected(ctx, req.Client)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", Errorf(CodeUnauthorized, "this client is not connected; send connect with the secret from the bunker:// URI first")
	}
	switch req.Method {
	case "ping":
		return "pong", nil
	case "get_public_key":
		return s.pk, nil
	case "switch_relays":
		b, err := json.Marshal(s.pool.URLs())
		return string(b), err
	case "logout":
		if err := s.sessions.EndSession(ctx, req.Client); err != nil {
			return "", err
		}
		return "ack", nil
	case "sign_psbt":
		if s.psbt == nil {
			return "", Errorf(CodeInternal, "sign_psbt is not available")
		}
		return s.psbt.SignPSBT(ctx, req)
	case "":
		return "", Errorf(CodeInvalidRequest, "missing method")
	default:
		return "", Errorf(CodeUnknownMethod, "method %q is not supported by this remote signer", truncate(req.Method, 64))
	}
}

// connect handles NIP-46 connect [remote_signer_pubkey, secret?, perms?, metadata?]: a valid
// unused secret (single use) creates a session; a client that already has a session may
// reconnect without one.
func (s *RemoteSigner) connect(ctx context.Context, req Request) (string, error) {
	if len(req.Params) < 1 || req.Params[0] != s.pk {
		return "", Errorf(CodeInvalidParams, "connect: first param must be this remote signer's pubkey %s", s.pk)
	}
	secret, perms, meta := param(req.Params, 1), param(req.Params, 2), param(req.Params, 3)
	if secret == "" {
		ok, err := s.sessions.ClientConnected(ctx, req.Client)
		if err != nil {
			return "", err
		}
		if ok {
			return "ack", nil
		}
		return "", Errorf(CodeUnauthorized, "connect needs the secret from a bunker:// URI (create one with `cosigner bunker-uri`)")
	}
	if err := s.sessions.UseConnectSecret(ctx, secret, req.Client, perms, truncate(meta, 1024)); err != nil {
		if errors.Is(err, store.ErrSecretInvalid) {
			_ = s.sessions.AppendAudit(ctx, store.AuditEntry{Client: req.Client, RequestID: req.ID, Method: "connect",
				Decision: "rejected", Rule: "connect_secret", Reason: "unknown or already used secret"})
			return "", Errorf(CodeUnauthorized, "connect secret is unknown or was already used; ask the operator for a new bunker:// URI")
		}
		return "", err
	}
	_ = s.sessions.AppendAudit(ctx, store.AuditEntry{Client: req.Client, RequestID: req.ID, Method: "connect",
		Decision: "connected", Rule: "connect_secret", Reason: "single-use secret accepted"})
	s.log.Info("client connected", "client", req.Client)
	return "ack", nil
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
