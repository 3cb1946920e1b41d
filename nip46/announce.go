package nip46

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Remote signer discovery (NIP-46 "Appendix": "Announcing remote-signer metadata" and "Remote
// signer discovery via NIP-89"): a NIP-89 handler information event (kind 31990) with a k tag
// 24133, relay tags and an optional nostrconnect_url tag, and a NIP-05 nostr.json that lists the
// remote signer's pubkey and relays.

// KindHandlerInformation is NIP-89's handler information event kind ("kind:31990").
const KindHandlerInformation = 31990

// AnnouncementDTag is the d tag of this remote signer's kind-31990 event: a fixed identifier,
// so that a new announcement replaces the previous one (kind 31990 is addressable by pubkey,
// kind and d; NIP-01).
const AnnouncementDTag = "cosigner-nip46"

// NostrConnectPlaceholder is what a nostrconnect_url template holds where a client puts its
// nostrconnect:// URI (NIP-46 "Announcing remote-signer metadata").
const NostrConnectPlaceholder = "<nostrconnect>"

// Announcement is what the remote signer publishes about itself. Every field but Relays is
// optional.
type Announcement struct {
	// Name, About, Picture and Website are the kind-0-style metadata of the event's content
	// (NIP-89: "useful when the pubkey creating the kind:31990 is not an application").
	Name    string
	About   string
	Picture string // http(s) URL
	Website string // http(s) URL
	// NIP05 is "name@domain" whose nostr.json lists this remote signer (NostrJSON). nostr-tools'
	// fetchBunkerProviders reads it from the content and keeps only announcements whose
	// nostr.json names the event's author with at least one relay.
	NIP05 string
	// Relays are where clients reach the remote signer (relay tags, and nostr.json's relays).
	Relays []string
	// NostrConnectURL is an https URL template holding NostrConnectPlaceholder, where a user
	// is sent to accept a nostrconnect:// URI (nostrconnect_url tag).
	NostrConnectURL string
}

// Validate checks a: at least one relay, each ws:// or wss://, at most 16; Picture and Website
// http(s) URLs; NIP05 "name@domain"; NostrConnectURL an https URL holding
// NostrConnectPlaceholder; Name and About of printable text (at most 128 and 1024 bytes).
// Errors name the field.
func (a Announcement) Validate() error {
	q := url.Values{"relay": a.Relays}
	if _, err := uriRelays(q); err != nil {
		return fmt.Errorf("announce: relays: %w", err)
	}
	if _, err := (ClientMetadata{Name: a.Name}).Validate(); err != nil {
		return fmt.Errorf("announce: name: %w", err)
	}
	if len(a.About) > 1024 {
		return fmt.Errorf("announce: about longer than 1024 bytes")
	}
	for _, f := range [][2]string{{"picture", a.Picture}, {"website", a.Website}} {
		if f[1] != "" {
			if msg := checkHTTPURL(f[1]); msg != "" {
				return fmt.Errorf("announce: %s %s", f[0], msg)
			}
		}
	}
	if a.NIP05 != "" {
		if _, _, err := SplitNIP05(a.NIP05); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
	}
	if a.NostrConnectURL != "" {
		msg := checkHTTPURL(strings.ReplaceAll(a.NostrConnectURL, NostrConnectPlaceholder, "x"))
		switch {
		case msg != "":
			return fmt.Errorf("announce: nostrconnect_url %s", msg)
		case !strings.HasPrefix(a.NostrConnectURL, "https://"):
			return fmt.Errorf("announce: nostrconnect_url must be an https:// URL")
		case !strings.Contains(a.NostrConnectURL, NostrConnectPlaceholder):
			return fmt.Errorf("announce: nostrconnect_url must hold the placeholder %s", NostrConnectPlaceholder)
		}
	}
	return nil
}

// SplitNIP05 splits a NIP-05 identifier "name@domain" (or "domain", meaning "_@domain") into
// its lower-case name and domain. Errors say what is malformed.
func SplitNIP05(id string) (name, domain string, err error) {
	name, domain, ok := strings.Cut(strings.ToLower(strings.TrimSpace(id)), "@")
	if !ok {
		name, domain = "_", name
	}
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return "", "", fmt.Errorf("NIP-05 %q: the name may hold only a-z0-9-_.", truncate(id, 80))
	}
	if u, perr := url.Parse("https://" + domain); perr != nil || u.Host != domain || !strings.Contains(domain, ".") || strings.ContainsAny(domain, "/?#@:") {
		return "", "", fmt.Errorf("NIP-05 %q: %q is not a domain", truncate(id, 80), truncate(domain, 80))
	}
	return name, domain, nil
}

// HandlerTags are the tags of a's NIP-89 handler information event (kind
// KindHandlerInformation, 31990): d (AnnouncementDTag), k 24133, one relay tag per relay, and
// nostrconnect_url when set. Call Validate first. (The event itself is built and signed by the
// signer, which holds the key; this package stays free of Nostr I/O libraries.)
func (a Announcement) HandlerTags() [][]string {
	tags := [][]string{{"d", AnnouncementDTag}, {"k", strconv.Itoa(KindNostrConnect)}}
	for _, r := range a.Relays {
		tags = append(tags, []string{"relay", r})
	}
	if a.NostrConnectURL != "" {
		tags = append(tags, []string{"nostrconnect_url", a.NostrConnectURL})
	}
	return tags
}

// HandlerContent is the content of a's NIP-89 handler information event: the kind-0-style JSON
// {name, about, picture, website, nip05}, empty fields left out.
func (a Announcement) HandlerContent() string {
	content, _ := json.Marshal(struct { // strings only: cannot fail
		Name    string `json:"name,omitempty"`
		About   string `json:"about,omitempty"`
		Picture string `json:"picture,omitempty"`
		Website string `json:"website,omitempty"`
		NIP05   string `json:"nip05,omitempty"`
	}{a.Name, a.About, a.Picture, a.Website, a.NIP05})
	return string(content)
}

// NostrJSON is the NIP-05 document to serve at https://<domain>/.well-known/nostr.json?name=<name>
// for the remote signer pubkey (NIP-46 "Announcing remote-signer metadata"):
//
//	{"names": {<name>: <pubkey>},
//	 "nip46": {"relays": [...], "nostrconnect_url": "...", <pubkey>: [...]}}
//
// nip46.relays and nip46.nostrconnect_url are the current NIP-46 form; the same relays under
// the pubkey are the older form that nostr-tools 2.x (queryBunkerProfile) still reads. Both can
// be served at once. Errors: a malformed name or relay.
func NostrJSON(pubkey, name string, relays []string, nostrConnectURL string) ([]byte, error) {
	if name == "" {
		name = "_"
	}
	if _, _, err := SplitNIP05(name + "@example.com"); err != nil {
		return nil, err
	}
	if err := (Announcement{Relays: relays, NostrConnectURL: nostrConnectURL}).Validate(); err != nil {
		return nil, err
	}
	nip46 := map[string]any{"relays": relays, pubkey: relays}
	if nostrConnectURL != "" {
		nip46["nostrconnect_url"] = nostrConnectURL
	}
	return json.MarshalIndent(map[string]any{"names": map[string]string{name: pubkey}, "nip46": nip46}, "", "  ")
}
