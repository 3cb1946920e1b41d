package nip46

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URI limits (NIP-46 does not set any; these keep hostile URIs small).
const (
	maxURIBytes  = 8192
	maxURIRelays = 16
	maxURIField  = 512
	maxURISecret = 256
)

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

// BunkerPointer is a parsed bunker:// URI (NIP-46, "Direct connection initiated by remote
// signer").
type BunkerPointer struct {
	RemoteSignerPubKey string   // hex
	Relays             []string // ws:// or wss://
	Secret             string   // optional single-use connect secret
}

// ParseBunkerURI parses "bunker://<remote-signer-pubkey>?relay=…&secret=…". The pubkey must be
// 64 lower-case hex characters and there must be at least one ws:// or wss:// relay.
// Errors: ErrBadURI wrapped with what is wrong.
func ParseBunkerURI(s string) (BunkerPointer, error) {
	pk, q, err := parseNIP46URI(s, "bunker")
	if err != nil {
		return BunkerPointer{}, err
	}
	relays, err := uriRelays(q)
	if err != nil {
		return BunkerPointer{}, err
	}
	secret := q.Get("secret")
	if len(secret) > maxURISecret {
		return BunkerPointer{}, fmt.Errorf("%w: secret longer than %d characters", ErrBadURI, maxURISecret)
	}
	return BunkerPointer{RemoteSignerPubKey: pk, Relays: relays, Secret: secret}, nil
}

// NostrConnectURI is a parsed nostrconnect:// URI (NIP-46, "Direct connection initiated by the
// client").
type NostrConnectURI struct {
	ClientPubKey string   // hex
	Relays       []string // the client's relays, where it waits for the response
	Secret       string   // required; the remote signer returns it as connect's result
	Perms        string   // what the client asks for, "method[:kind],…" as written
	Name         string   // display hints, never authority
	URL          string
	Image        string
	// MetadataNote says why an older-form metadata= JSON param was not read ("" otherwise).
	MetadataNote string
}

// ParseNostrConnectURI parses "nostrconnect://<client-pubkey>?relay=…&secret=…&perms=…&name=…".
// name, url and image are returned as written (AcceptNostrConnect validates them). A URI
// without any of them but with the older metadata={"name","url",…} JSON param (rust-nostr's
// clients still send it) is read through ParseClientMetadata instead; a malformed one is noted
// in MetadataNote, never an error.
// Errors: ErrBadURI wrapped with what is wrong (a missing secret included: the current NIP-46
// requires it so that the client can tell the real response from a spoofed one).
func ParseNostrConnectURI(s string) (NostrConnectURI, error) {
	pk, q, err := parseNIP46URI(s, "nostrconnect")
	if err != nil {
		return NostrConnectURI{}, err
	}
	relays, err := uriRelays(q)
	if err != nil {
		return NostrConnectURI{}, err
	}
	u := NostrConnectURI{ClientPubKey: pk, Relays: relays, Secret: q.Get("secret"), Perms: q.Get("perms"),
		Name: q.Get("name"), URL: q.Get("url"), Image: q.Get("image")}
	switch {
	case u.Secret == "":
		return NostrConnectURI{}, fmt.Errorf("%w: nostrconnect URI without a secret", ErrBadURI)
	case len(u.Secret) > maxURISecret:
		return NostrConnectURI{}, fmt.Errorf("%w: secret longer than %d characters", ErrBadURI, maxURISecret)
	case len(u.Perms) > maxURIField*4 || len(u.Name) > maxURIField || len(u.URL) > maxURIField || len(u.Image) > maxURIField:
		return NostrConnectURI{}, fmt.Errorf("%w: a parameter is too long", ErrBadURI)
	}
	if raw := q.Get("metadata"); raw != "" && u.Name == "" && u.URL == "" && u.Image == "" {
		m, err := ParseClientMetadata(raw)
		u.Name, u.URL, u.Image = m.Name, m.URL, m.Image
		if err != nil {
			u.MetadataNote = "metadata= param: " + err.Error()
		}
	}
	return u, nil
}

func parseNIP46URI(s, scheme string) (string, url.Values, error) {
	if len(s) > maxURIBytes {
		return "", nil, fmt.Errorf("%w: longer than %d bytes", ErrBadURI, maxURIBytes)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URI, which may carry a secret
		}
		return "", nil, fmt.Errorf("%w: %v", ErrBadURI, err)
	}
	if u.Scheme != scheme {
		return "", nil, fmt.Errorf("%w: scheme must be %s://", ErrBadURI, scheme)
	}
	pk := u.Host
	if pk == "" {
		pk = u.Opaque // "bunker:<pk>?…" without slashes
	}
	if b, err := hex.DecodeString(pk); err != nil || len(b) != 32 || strings.ToLower(pk) != pk || u.User != nil || u.Port() != "" {
		return "", nil, fmt.Errorf("%w: %s:// must be followed by a 64-character lower-case hex pubkey", ErrBadURI, scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return "", nil, fmt.Errorf("%w: unexpected path after the pubkey", ErrBadURI)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("%w: query: %v", ErrBadURI, err)
	}
	return pk, q, nil
}

func uriRelays(q url.Values) ([]string, error) {
	var out []string
	for _, r := range q["relay"] {
		ru, err := url.Parse(r)
		if err != nil || (ru.Scheme != "ws" && ru.Scheme != "wss") || ru.Host == "" || len(r) > maxURIField {
			return nil, fmt.Errorf("%w: relay %q is not a ws:// or wss:// URL", ErrBadURI, truncate(r, 80))
		}
		dup := false
		for _, o := range out {
			dup = dup || o == r
		}
		if !dup {
			out = append(out, r)
		}
	}
	switch {
	case len(out) == 0:
		return nil, fmt.Errorf("%w: no relay= parameter", ErrBadURI)
	case len(out) > maxURIRelays:
		return nil, fmt.Errorf("%w: more than %d relays", ErrBadURI, maxURIRelays)
	}
	return out, nil
}

// truncate cuts s to n bytes (valid UTF-8) for error messages about hostile input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
