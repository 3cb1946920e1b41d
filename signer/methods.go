package signer

import (
	"bytes"
	"context"
	"crypto/aes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
)

// MaxEventTemplateBytes bounds sign_event's event template (JSON).
const MaxEventTemplateBytes = 64 * 1024

// registerBuiltins installs the NIP-46 methods that need a permission (the session methods are
// answered in dispatch).
func (s *RemoteSigner) registerBuiltins() {
	s.handlers[nip46.MethodSignEvent] = s.signEvent
	s.handlers[nip46.MethodNIP44Encrypt] = s.nip44Encrypt
	s.handlers[nip46.MethodNIP44Decrypt] = s.nip44Decrypt
	if s.legacyNIP04 {
		s.handlers[nip46.MethodNIP04Encrypt] = s.nip04Encrypt
		s.handlers[nip46.MethodNIP04Decrypt] = s.nip04Decrypt
	}
}

// dispatch runs one method. connect needs no session; the session methods need a session;
// every other method needs the session's permission for it.
func (s *RemoteSigner) dispatch(ctx context.Context, req nip46.Call) (string, error) {
	if req.Method == nip46.MethodConnect {
		return s.connect(ctx, req)
	}
	permsText, ok, err := s.sessionPerms(ctx, req.Client)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", nip46.Errorf(nip46.CodeUnauthorized, "this client is not connected; send connect with the secret from the bunker:// URI first")
	}
	switch req.Method {
	case nip46.MethodPing:
		return "pong", nil
	case nip46.MethodGetPublicKey:
		return s.pk, nil
	case nip46.MethodSwitchRelays:
		b, err := json.Marshal(s.pool.URLs())
		return string(b), err
	case nip46.MethodLogout:
		// NIP-46 "Ending a session": reply "ack" before removing the session; afterSessionMethod
		// removes it once the ack is out.
		return "ack", nil
	}
	h, known := s.handler(req.Method)
	if !known {
		if req.Method == nip46.MethodNIP04Encrypt || req.Method == nip46.MethodNIP04Decrypt {
			return "", nip46.Errorf(nip46.CodeUnknownMethod, "%s is disabled on this remote signer (NIP-04 is deprecated; use nip44_*)", req.Method)
		}
		return "", nip46.Errorf(nip46.CodeUnknownMethod, "method %q is not supported by this remote signer", truncate(req.Method, 64))
	}
	perms, err := nip46.ParsePerms(permsText)
	if err != nil {
		return "", fmt.Errorf("session %s: stored perms: %w", req.Client, err)
	}
	kind := -1
	if req.Method == nip46.MethodSignEvent {
		tmpl, err := parseEventTemplate(param(req.Params, 0))
		if err != nil {
			return "", err
		}
		kind = tmpl.Kind
	}
	if !perms.Allows(req.Method, kind) {
		what := req.Method
		if kind >= 0 {
			what = fmt.Sprintf("%s:%d", req.Method, kind)
		}
		s.audit(ctx, req, "rejected", "permissions", "client lacks "+what)
		return "", nip46.Errorf(nip46.CodeUnauthorized, "this client is not permitted to call %s (granted: %s); the operator can grant it with `cosigner clients grant`", what, orNone(perms.String()))
	}
	return h(ctx, req)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (s *RemoteSigner) audit(ctx context.Context, req nip46.Call, decision, rule, reason string) {
	if err := s.sessions.AuditSession(ctx, session.Audit{Client: req.Client, RequestID: req.ID, Method: req.Method,
		Decision: decision, Rule: rule, Reason: reason}); err != nil {
		s.log.Error("audit log write failed", "error", err)
	}
}

// connect handles NIP-46 connect [remote_signer_pubkey, secret?, perms?, client_metadata?]: a
// valid unused secret (single use) creates a session whose permissions are the secret's perms
// intersected with the requested ones (GrantAtConnect); a client that already has a session may
// reconnect without one (that changes nothing, its metadata included).
//
// The client metadata (NIP-46 "Client metadata", {name, url, image}; an empty perms string
// keeps it fourth) is validated (nip46.ParseClientMetadata) and kept with the session and in the
// audit log as a display hint. It never decides anything: malformed metadata does not fail the
// connect (what was dropped is noted), and no permission, policy rule or session depends on it.
func (s *RemoteSigner) connect(ctx context.Context, req nip46.Call) (string, error) {
	if len(req.Params) < 1 || req.Params[0] != s.pk {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "connect: first param must be this remote signer's pubkey %s", s.pk)
	}
	secret, requested := param(req.Params, 1), param(req.Params, 2)
	if secret == "" {
		_, ok, err := s.sessions.SessionPerms(ctx, req.Client)
		if err != nil {
			return "", err
		}
		if ok {
			return "ack", nil
		}
		return "", nip46.Errorf(nip46.CodeUnauthorized, "connect needs the secret from a bunker:// URI (create one with `cosigner bunker-uri`)")
	}
	if len(requested) > 4096 {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "connect: perms longer than 4096 characters")
	}
	info := connectInfo(req.Params)
	granted, err := s.sessions.UseConnectSecret(ctx, secret, req.Client, requested, info,
		func(secretPerms string, has bool) (string, error) {
			p, err := nip46.GrantAtConnect(secretPerms, has, requested)
			return p.String(), err
		})
	if err != nil {
		if errors.Is(err, session.ErrSecretInvalid) {
			if _, ok, serr := s.sessions.SessionPerms(ctx, req.Client); serr == nil && !ok {
				// A stranger whose secret was spent since it was checked: like any stranger
				// with a bad secret, nothing is recorded and nothing answered.
				s.drops.badSecret.Add(1)
				return "", errUnanswered
			}
			s.audit(ctx, req, "rejected", "connect_secret", "unknown or already used secret")
			return "", nip46.Errorf(nip46.CodeUnauthorized, "connect secret is unknown or was already used; ask the operator for a new bunker:// URI")
		}
		return "", err
	}
	s.audit(ctx, req, "connected", "connect_secret", "single-use secret accepted; perms: "+orNone(granted)+"; "+describeInfo(info))
	s.log.Info("client connected", "client", req.Client, "perms", granted, "client_name", info.Name, "client_url", info.URL)
	return "ack", nil
}

// connectInfo reads connect's fourth param (client metadata) into the validated fields and a
// note on what was dropped. A perms param that holds the metadata instead (a client that left
// out the empty perms string) is noted: its entries grant nothing (GrantAtConnect skips them).
func connectInfo(params []string) session.ClientInfo {
	m, err := nip46.ParseClientMetadata(param(params, 3))
	info := session.ClientInfo{Name: m.Name, URL: m.URL, Image: m.Image}
	if err != nil {
		info.Note = err.Error()
	}
	if p := strings.TrimSpace(param(params, 2)); strings.HasPrefix(p, "{") && len(params) < 4 {
		info.Note = "the perms param (third) holds JSON; NIP-46 puts client metadata fourth, after an empty perms string"
	}
	return info
}

// describeInfo is info for the audit log: what the client says about itself, marked as
// unverified.
func describeInfo(info session.ClientInfo) string {
	var b strings.Builder
	b.WriteString("client says (unverified):")
	if info.Name == "" && info.URL == "" && info.Image == "" {
		b.WriteString(" nothing")
	}
	for _, f := range [][2]string{{"name", info.Name}, {"url", info.URL}, {"image", info.Image}} {
		if f[1] != "" {
			fmt.Fprintf(&b, " %s=%q", f[0], f[1])
		}
	}
	if info.Note != "" {
		b.WriteString("; " + info.Note)
	}
	return b.String()
}

// eventTemplate is sign_event's parameter (NIP-46 "sign_event": {kind, content, tags,
// created_at}).
type eventTemplate struct {
	Kind      *int       `json:"kind"`
	Content   *string    `json:"content"`
	Tags      nostr.Tags `json:"tags"`
	CreatedAt *int64     `json:"created_at"`
	PubKey    string     `json:"pubkey,omitempty"`
	// Some clients send an unsigned event with these; they are recomputed, never trusted.
	ID  json.RawMessage `json:"id,omitempty"`
	Sig json.RawMessage `json:"sig,omitempty"`
}

type parsedTemplate struct {
	Kind      int
	Content   string
	Tags      nostr.Tags
	CreatedAt nostr.Timestamp
	PubKey    string
}

// parseEventTemplate checks sign_event's JSON param. Errors: *MethodError invalid_params.
func parseEventTemplate(raw string) (parsedTemplate, error) {
	if raw == "" {
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: missing the event template (params[0])")
	}
	if len(raw) > MaxEventTemplateBytes {
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: event template larger than %d bytes", MaxEventTemplateBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.DisallowUnknownFields()
	var t eventTemplate
	if err := dec.Decode(&t); err != nil || dec.More() {
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: params[0] is not an event template {kind, content, tags, created_at}")
	}
	switch {
	case t.Kind == nil || *t.Kind < 0 || *t.Kind > 65535:
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: kind must be an integer 0..65535")
	case t.Content == nil:
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: content is missing")
	case t.CreatedAt != nil && *t.CreatedAt < 0:
		return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: created_at must be a Unix time in seconds")
	}
	for i, tag := range t.Tags {
		if len(tag) == 0 {
			return parsedTemplate{}, nip46.Errorf(nip46.CodeInvalidParams, "sign_event: tag %d is empty", i)
		}
	}
	p := parsedTemplate{Kind: *t.Kind, Content: *t.Content, Tags: t.Tags, PubKey: t.PubKey}
	if p.Tags == nil {
		p.Tags = nostr.Tags{}
	}
	if t.CreatedAt != nil {
		p.CreatedAt = nostr.Timestamp(*t.CreatedAt)
	}
	return p, nil
}

// signEvent handles NIP-46 sign_event [event template JSON] → the signed event JSON, signed by
// the user key (this signer's Nostr key). The kind must be permitted (checked in dispatch).
func (s *RemoteSigner) signEvent(ctx context.Context, req nip46.Call) (string, error) {
	t, err := parseEventTemplate(param(req.Params, 0))
	if err != nil {
		return "", err
	}
	if t.PubKey != "" && t.PubKey != s.pk {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "sign_event: the template's pubkey is not this signer's user pubkey %s", s.pk)
	}
	if t.CreatedAt == 0 {
		t.CreatedAt = nostr.Timestamp(s.now().Unix())
	}
	ev := nostr.Event{PubKey: s.pk, CreatedAt: t.CreatedAt, Kind: t.Kind, Tags: t.Tags, Content: t.Content}
	if err := ev.Sign(s.sk); err != nil {
		return "", fmt.Errorf("sign_event: %w", err)
	}
	s.audit(ctx, req, "signed", "permissions", fmt.Sprintf("event %s kind %d", ev.ID, ev.Kind))
	return ev.String(), nil
}

// peer checks a [pubkey, text] param pair of the nip44_* / nip04_* methods.
func peer(req nip46.Call) (string, string, error) {
	if len(req.Params) != 2 {
		return "", "", nip46.Errorf(nip46.CodeInvalidParams, "%s: params must be [third_party_pubkey, text]", req.Method)
	}
	pk := req.Params[0]
	if b, err := hex.DecodeString(pk); err != nil || len(b) != 32 {
		return "", "", nip46.Errorf(nip46.CodeInvalidParams, "%s: params[0] must be a 64-character hex pubkey", req.Method)
	}
	return pk, req.Params[1], nil
}

// looksLikeNIP46 reports whether a decrypted text is a NIP-46 message (request or response).
// The user key is also the remote-signer key, so nip44_decrypt / nip04_decrypt would otherwise
// let one client read another client's requests and responses (connect secrets, PSBTs).
func looksLikeNIP46(plain string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(plain), &m) != nil {
		return false
	}
	_, id := m["id"]
	_, method := m["method"]
	_, result := m["result"]
	_, errField := m["error"]
	return id && (method || result || errField)
}

func (s *RemoteSigner) nip44Encrypt(ctx context.Context, req nip46.Call) (string, error) {
	pk, text, err := peer(req)
	if err != nil {
		return "", err
	}
	ck, err := nip44.GenerateConversationKey(pk, s.sk)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip44_encrypt: %v", err)
	}
	out, err := nip44.Encrypt(text, ck)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip44_encrypt: %v", err)
	}
	return out, nil
}

func (s *RemoteSigner) nip44Decrypt(ctx context.Context, req nip46.Call) (string, error) {
	pk, text, err := peer(req)
	if err != nil {
		return "", err
	}
	ck, err := nip44.GenerateConversationKey(pk, s.sk)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip44_decrypt: %v", err)
	}
	out, err := nip44.Decrypt(text, ck)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip44_decrypt: %v", err)
	}
	if looksLikeNIP46(out) {
		return "", nip46.Errorf(nip46.CodeUnauthorized, "nip44_decrypt: refusing to decrypt a NIP-46 message addressed to this remote signer")
	}
	return out, nil
}

func (s *RemoteSigner) nip04Encrypt(ctx context.Context, req nip46.Call) (string, error) {
	pk, text, err := peer(req)
	if err != nil {
		return "", err
	}
	shared, err := nip04.ComputeSharedSecret(pk, s.sk)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip04_encrypt: %v", err)
	}
	out, err := nip04.Encrypt(text, shared)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip04_encrypt: %v", err)
	}
	return out, nil
}

func (s *RemoteSigner) nip04Decrypt(ctx context.Context, req nip46.Call) (string, error) {
	pk, text, err := peer(req)
	if err != nil {
		return "", err
	}
	shared, err := nip04.ComputeSharedSecret(pk, s.sk)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip04_decrypt: %v", err)
	}
	out, err := nip04Decrypt(text, shared)
	if err != nil {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "nip04_decrypt: %v", err)
	}
	if looksLikeNIP46(out) {
		return "", nip46.Errorf(nip46.CodeUnauthorized, "nip04_decrypt: refusing to decrypt a NIP-46 message addressed to this remote signer")
	}
	return out, nil
}

// WalletInfo is get_wallet's result: what a coordinator needs to register this co-signer
// (BIP-388 style). JSON: {"descriptor","fingerprints","network","key_origin"}.
type WalletInfo struct {
	// Descriptor is the registered wallet descriptor with its #checksum (BIP-380).
	Descriptor string `json:"descriptor"`
	// Fingerprints are the master key fingerprints of every key in the descriptor, 8 hex each.
	Fingerprints []string `json:"fingerprints"`
	// Network is the Bitcoin network name (mainnet, testnet3, signet, regtest).
	Network string `json:"network"`
	// KeyOrigin is this co-signer's own key, "[fingerprint/path]xpub".
	KeyOrigin string `json:"key_origin"`
}

// WalletMethod returns the get_wallet handler for info (register it with Handle("get_wallet", …)).
func WalletMethod(info WalletInfo) HandlerFunc {
	b, err := json.Marshal(info)
	return func(ctx context.Context, req nip46.Call) (string, error) {
		if err != nil {
			return "", err
		}
		if len(req.Params) != 0 {
			return "", nip46.Errorf(nip46.CodeInvalidParams, "get_wallet takes no params")
		}
		return string(b), nil
	}
}

// nip04Decrypt is go-nostr's nip04.Decrypt after the shape checks it lacks (it panics on an IV
// that is not 16 bytes or a ciphertext that is not whole AES blocks).
func nip04Decrypt(content string, shared []byte) (string, error) {
	ct, iv, ok := strings.Cut(content, "?iv=")
	if !ok {
		return "", errors.New("not NIP-04: no ?iv=")
	}
	ctb, err1 := base64.StdEncoding.DecodeString(ct)
	ivb, err2 := base64.StdEncoding.DecodeString(iv)
	if err1 != nil || err2 != nil || len(ivb) != aes.BlockSize || len(ctb) == 0 || len(ctb)%aes.BlockSize != 0 {
		return "", errors.New("malformed NIP-04 ciphertext")
	}
	return nip04.Decrypt(content, shared)
}
