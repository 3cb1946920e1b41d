package psbtnostr

// message.go — the plaintext of a psbt_nostr event and the checks an event passes before it
// is decrypted (pure).

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Wire constants of the plugin (spesmilo/electrum plugins/psbt_nostr/psbt_nostr.py) and its
// library (electrum-aionostr 0.1.0 relay.py, Relay._receive_messages).
const (
	// Kind is NOSTR_EVENT_KIND: NIP-04 direct messages, with an expiration tag.
	Kind = 4
	// KeepDelay is CosignerWallet.KEEP_DELAY: the subscription's look-back, the created_at
	// tolerance both ways, the expiration tag's distance and how long seen ids are kept.
	KeepDelay = 24 * time.Hour
	// SubscribeLimit is the "limit" of the plugin's filter.
	SubscribeLimit = 100
	// MaxRelayMessage is electrum-aionostr's limit: a relay message (["EVENT", sub, event] as
	// text) longer than this many characters is dropped unread.
	MaxRelayMessage = 64000
)

// Message is the plaintext: {"tx": "<PSBT as hex>", "label": "<optional>"} (the plugin's
// prepare_messages; label is left out when empty).
type Message struct {
	TX    string `json:"tx"`
	Label string `json:"label,omitempty"`
}

// Errors of ParseMessage and Check; each names why an event is dropped.
var (
	ErrNotCosigner = errors.New("psbtnostr: author is not a co-signer of the wallet")
	ErrStale       = errors.New("psbtnostr: created_at is more than 24 hours off")
	ErrOversized   = errors.New("psbtnostr: event larger than Electrum's 64,000-character relay message")
	ErrNotForUs    = errors.New("psbtnostr: event is not a kind-4 message p-tagged to this co-signer")
	ErrMalformed   = errors.New("psbtnostr: malformed message")
)

// ParseMessage reads a decrypted plaintext: a JSON object whose "tx" is a non-empty hex string
// (the PSBT; it is decoded later, by psbtflow) and "label" an optional string. Errors wrap
// ErrMalformed.
func ParseMessage(plaintext string) (Message, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(plaintext), &raw); err != nil {
		return Message{}, fmt.Errorf("%w: not a JSON object: %v", ErrMalformed, err)
	}
	var m Message
	tx, ok := raw["tx"]
	if !ok {
		return Message{}, fmt.Errorf("%w: no \"tx\"", ErrMalformed)
	}
	if err := json.Unmarshal(tx, &m.TX); err != nil || m.TX == "" {
		return Message{}, fmt.Errorf("%w: \"tx\" is not a non-empty string", ErrMalformed)
	}
	if l, ok := raw["label"]; ok && string(l) != "null" {
		if err := json.Unmarshal(l, &m.Label); err != nil {
			return Message{}, fmt.Errorf("%w: \"label\" is not a string", ErrMalformed)
		}
	}
	return m, nil
}

// Encode writes m as the plugin does (json.dumps of the dict).
func (m Message) Encode() string {
	b, _ := json.Marshal(m)
	return string(b)
}

// RelayMessageLen is the length in characters of ev as a relay delivers it to a subscription
// (["EVENT", sub, ev]) — what electrum-aionostr compares with MaxRelayMessage.
func RelayMessageLen(ev *nostr.Event, sub string) int {
	b, _ := json.Marshal([]any{"EVENT", sub, ev})
	return len(b)
}

// Check is the plugin's receive filter for an event the relay pool delivered (its id and
// signature already checked): kind 4, p-tagged to own, authored by a co-signer, created_at
// within KeepDelay of now, and no larger than MaxRelayMessage. It returns nil or one of
// ErrNotForUs, ErrNotCosigner, ErrStale, ErrOversized. Pure.
func Check(ev *nostr.Event, w *Wallet, now time.Time) error {
	if ev.Kind != Kind || !hasTag(ev, "p", w.OwnPubKey) {
		return ErrNotForUs
	}
	if !w.IsCosigner(ev.PubKey) {
		return ErrNotCosigner
	}
	at := ev.CreatedAt.Time()
	if at.After(now.Add(KeepDelay)) || at.Before(now.Add(-KeepDelay)) {
		return ErrStale
	}
	// The subscription id a relay echoes is at most 64 characters (NIP-01).
	if RelayMessageLen(ev, "") > MaxRelayMessage {
		return ErrOversized
	}
	return nil
}

func hasTag(ev *nostr.Event, name, value string) bool {
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == name && t[1] == value {
			return true
		}
	}
	return false
}

// Tags are the tags of an event to recipient sent at now: ["p", recipient] and ["expiration",
// now+KeepDelay in unix seconds], the plugin's send_direct_messages.
func Tags(recipient string, now time.Time) nostr.Tags {
	return nostr.Tags{{"p", recipient}, {"expiration", strconv.FormatInt(now.Add(KeepDelay).Unix(), 10)}}
}
