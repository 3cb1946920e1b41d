package relaypool

// info.go — the relay information document (NIP-11) and the limits the Pool respects.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip11"
)

const (
	// infoTimeout bounds fetching a relay's NIP-11 document.
	infoTimeout = 3 * time.Second
	// infoMaxBytes bounds the document's size; a longer one is ignored.
	infoMaxBytes = 64 << 10
	// infoTTL is how long a fetched document is used before it is fetched again (at the next dial).
	infoTTL = time.Hour
)

// Limits are the parts of a relay's NIP-11 "limitation" object the Pool respects; zero means
// no limit announced. Source: NIP-11 "Server Limitations".
type Limits struct {
	MaxMessageLength int  `json:"max_message_length,omitempty"` // bytes of one WebSocket message we send
	MaxSubscriptions int  `json:"max_subscriptions,omitempty"`  // open REQs per connection
	MaxFilters       int  `json:"max_filters,omitempty"`        // filters per REQ (the Pool sends one)
	MaxLimit         int  `json:"max_limit,omitempty"`          // a filter's limit is lowered to this
	MaxSubidLength   int  `json:"max_subid_length,omitempty"`   // subscription ids are cut to this
	MaxEventTags     int  `json:"max_event_tags,omitempty"`     // tags per published event
	MaxContentLength int  `json:"max_content_length,omitempty"` // characters of a published event's content
	AuthRequired     bool `json:"auth_required,omitempty"`      // NIP-42 AUTH before anything else
}

// parseInfo reads a NIP-11 relay information document and returns its limits. Negative numbers
// are treated as absent. It returns an error for a body that is not a JSON object.
func parseInfo(b []byte) (Limits, error) {
	var doc nip11.RelayInformationDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		return Limits{}, fmt.Errorf("relaypool: NIP-11 document: %w", err)
	}
	if doc.Limitation == nil {
		return Limits{}, nil
	}
	l := doc.Limitation
	pos := func(n int) int { return max(n, 0) }
	return Limits{
		MaxMessageLength: pos(l.MaxMessageLength), MaxSubscriptions: pos(l.MaxSubscriptions),
		MaxFilters: pos(l.MaxFilters), MaxLimit: pos(l.MaxLimit), MaxSubidLength: pos(l.MaxSubidLength),
		MaxEventTags: pos(l.MaxEventTags), MaxContentLength: pos(l.MaxContentLength),
		AuthRequired: l.AuthRequired,
	}, nil
}

// software is what a NIP-11 document says the relay runs ("software", "version").
type software struct {
	Software string `json:"software"`
	Version  string `json:"version"`
}

// fetchInfo GETs the NIP-11 document of the relay at wsURL (ws→http, wss→https, same host and
// path) with "Accept: application/nostr+json", within infoTimeout and infoMaxBytes, and returns
// its limits and software. reached is false when no HTTP answer came (the relay is down): the
// document should be asked for again.
func fetchInfo(ctx context.Context, client *http.Client, wsURL string) (l Limits, sw software, reached bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	httpURL := "http" + strings.TrimPrefix(wsURL, "ws")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL, nil)
	if err != nil {
		return Limits{}, software{}, true, err
	}
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := client.Do(req)
	if err != nil {
		return Limits{}, software{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Limits{}, software{}, true, fmt.Errorf("relaypool: NIP-11 document: HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, infoMaxBytes+1))
	if err != nil {
		return Limits{}, software{}, true, err
	}
	if len(b) > infoMaxBytes {
		return Limits{}, software{}, true, fmt.Errorf("relaypool: NIP-11 document over %d bytes", infoMaxBytes)
	}
	l, err = parseInfo(b)
	if err == nil {
		_ = json.Unmarshal(b, &sw) // parsed above: a JSON object; wrong types leave sw empty
	}
	return l, sw, true, err
}

// checkPublish reports why ev, encoded as msg, must not be sent to a relay with limits l, or
// nil. Errors wrap ErrRelayLimit and name the limit.
func (l Limits) checkPublish(ev *nostr.Event, msg []byte) error {
	if l.MaxMessageLength > 0 && len(msg) > l.MaxMessageLength {
		return fmt.Errorf("%w: the EVENT message is %d bytes, the relay accepts at most %d (max_message_length)", ErrRelayLimit, len(msg), l.MaxMessageLength)
	}
	if l.MaxEventTags > 0 && len(ev.Tags) > l.MaxEventTags {
		return fmt.Errorf("%w: the event has %d tags, the relay accepts at most %d (max_event_tags)", ErrRelayLimit, len(ev.Tags), l.MaxEventTags)
	}
	if n := utf8.RuneCountInString(ev.Content); l.MaxContentLength > 0 && n > l.MaxContentLength {
		return fmt.Errorf("%w: the content is %d characters, the relay accepts at most %d (max_content_length)", ErrRelayLimit, n, l.MaxContentLength)
	}
	return nil
}

// adjustFilter returns f fitted to l: its limit lowered to max_limit.
func (l Limits) adjustFilter(f nostr.Filter) nostr.Filter {
	if l.MaxLimit > 0 && (f.Limit > l.MaxLimit) {
		f.Limit = l.MaxLimit
	}
	return f
}
