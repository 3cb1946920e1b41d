package nip46

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrBadClientMetadata means a client's self-description (connect's fourth param, or the
// name/url/image of a nostrconnect:// URI) is malformed or too large; the fields that were
// valid are still returned. It never fails a connect: the metadata is a display hint.
var ErrBadClientMetadata = errors.New("client metadata ignored")

// Client metadata limits (NIP-46 sets none; these keep a hostile client's text small).
const (
	// MaxClientMetadataBytes bounds connect's fourth param (the JSON text).
	MaxClientMetadataBytes = 4096
	// MaxClientNameBytes bounds the name, in bytes of UTF-8.
	MaxClientNameBytes = 128
	// MaxClientURLBytes bounds url and image.
	MaxClientURLBytes = 512
)

// ClientMetadata is what a client says about itself (NIP-46 "Client metadata": connect's
// optional fourth param, a JSON object {name, url, image}, all optional; the same fields as the
// nostrconnect:// query parameters). It is unauthenticated: a display hint for people, never an
// input to an authorization decision (anyone can claim any name).
type ClientMetadata struct {
	Name  string `json:"name,omitempty"`  // the client application's name
	URL   string `json:"url,omitempty"`   // its canonical URL, http(s)
	Image string `json:"image,omitempty"` // a small image representing it, http(s) URL
}

// IsZero reports whether m carries nothing.
func (m ClientMetadata) IsZero() bool { return m == ClientMetadata{} }

// JSON is m as a JSON object ("" when m is empty).
func (m ClientMetadata) JSON() string {
	if m.IsZero() {
		return ""
	}
	b, _ := json.Marshal(m) // strings only: cannot fail
	return string(b)
}

// ParseClientMetadata reads connect's optional_client_metadata param (NIP-46 "Client metadata"):
// a JSON object whose fields name, url and image are strings, all optional; other fields are
// ignored. An empty param is no metadata. Each field is checked on its own (Validate); the valid
// ones are returned even when the error is not nil.
//
// Errors wrap ErrBadClientMetadata and say what was wrong: too large, not a JSON object, a field
// that is not a string, or a field that Validate refuses.
func ParseClientMetadata(raw string) (ClientMetadata, error) {
	if strings.TrimSpace(raw) == "" {
		return ClientMetadata{}, nil
	}
	if len(raw) > MaxClientMetadataBytes {
		return ClientMetadata{}, fmt.Errorf("%w: longer than %d bytes", ErrBadClientMetadata, MaxClientMetadataBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil || obj == nil {
		return ClientMetadata{}, fmt.Errorf("%w: not a JSON object {name, url, image}", ErrBadClientMetadata)
	}
	var m ClientMetadata
	var problems []string
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &m.Name}, {"url", &m.URL}, {"image", &m.Image}} {
		v, ok := obj[f.key]
		if !ok || string(v) == "null" {
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			problems = append(problems, f.key+" is not a string")
		}
	}
	valid, err := m.Validate()
	if err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), ErrBadClientMetadata.Error()+": "))
	}
	if len(problems) > 0 {
		return valid, fmt.Errorf("%w: %s", ErrBadClientMetadata, strings.Join(problems, "; "))
	}
	return valid, nil
}

// Validate returns m without the fields that may not be shown, and an error (wrapping
// ErrBadClientMetadata) naming them: a name over MaxClientNameBytes, not UTF-8 or with control
// characters; a url or image over MaxClientURLBytes or not an absolute http:// or https:// URL
// with a host and without user info.
func (m ClientMetadata) Validate() (ClientMetadata, error) {
	var problems []string
	m.Name = strings.TrimSpace(m.Name)
	switch {
	case len(m.Name) > MaxClientNameBytes:
		problems, m.Name = append(problems, fmt.Sprintf("name longer than %d bytes", MaxClientNameBytes)), ""
	case !utf8.ValidString(m.Name) || strings.IndexFunc(m.Name, unicode.IsControl) >= 0:
		problems, m.Name = append(problems, "name has control characters or is not UTF-8"), ""
	}
	for _, f := range []struct {
		key string
		v   *string
	}{{"url", &m.URL}, {"image", &m.Image}} {
		if *f.v == "" {
			continue
		}
		if msg := checkHTTPURL(*f.v); msg != "" {
			problems, *f.v = append(problems, f.key+" "+msg), ""
		}
	}
	if len(problems) > 0 {
		return m, fmt.Errorf("%w: %s", ErrBadClientMetadata, strings.Join(problems, "; "))
	}
	return m, nil
}

// checkHTTPURL returns why s is not a URL a person may be shown and follow, or "".
func checkHTTPURL(s string) string {
	if len(s) > MaxClientURLBytes {
		return fmt.Sprintf("longer than %d bytes", MaxClientURLBytes)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return "has spaces or control characters"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "https" && u.Scheme != "http":
		return "is not an http:// or https:// URL"
	case u.Host == "" || u.User != nil:
		return "must name a host and no user info"
	}
	return ""
}
