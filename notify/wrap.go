package notify

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
)

// The functional core: the three NIP-17/NIP-59 layers as pure functions of their inputs (the
// randomness — one-time key, NIP-44 nonces, timestamps — comes from crypto/rand or from the
// caller).

const (
	// MaxTextBytes bounds a message's text (UTF-8 bytes). A notification is a few lines; the
	// bound keeps the seal well inside NIP-44's 65,535-byte plaintext limit.
	MaxTextBytes = 16 << 10
	// TimestampWindow is how far in the past the seal's and the wrap's created_at may be drawn
	// (NIP-17 "Encrypting": "randomize created_at in up to two days in the past in both the seal
	// and the gift wrap"; NIP-59: all timestamps in the past, as some relays refuse the future).
	TimestampWindow = 48 * time.Hour
)

// Rumor returns the kind 14 chat message of NIP-17 ("Direct Message Kind"): author senderPub
// (hex), created_at now (the real time of the message), one ["p", <hex pubkey>] tag per
// recipient in the order given (duplicates dropped), content text, id set, and NO signature — a
// signed kind 14 could be published and become public (NIP-17: "Kind 14s MUST never be signed").
// Errors: ErrBadText (empty or not UTF-8), ErrTooLong (over MaxTextBytes), ErrNoRecipients,
// ErrBadRecipient (a recipient not a valid hex pubkey), ErrBadSenderKey (senderPub not a valid
// hex pubkey).
func Rumor(senderPub string, recipients []string, text string, now time.Time) (nostr.Event, error) {
	if !validPubKey(senderPub) {
		return nostr.Event{}, fmt.Errorf("%w: sender pubkey %q", ErrBadSenderKey, senderPub)
	}
	if err := checkText(text); err != nil {
		return nostr.Event{}, err
	}
	if len(recipients) == 0 {
		return nostr.Event{}, ErrNoRecipients
	}
	tags := make(nostr.Tags, 0, len(recipients))
	seen := make([]string, 0, len(recipients))
	for _, r := range recipients {
		if !validPubKey(r) {
			return nostr.Event{}, fmt.Errorf("%w: %q is not a hex pubkey", ErrBadRecipient, r)
		}
		if slices.Contains(seen, r) {
			continue
		}
		seen = append(seen, r)
		tags = append(tags, nostr.Tag{"p", r})
	}
	rumor := nostr.Event{
		PubKey:    senderPub,
		CreatedAt: nostr.Timestamp(now.Unix()),
		Kind:      nostr.KindDirectMessage,
		Tags:      tags,
		Content:   text,
	}
	rumor.ID = rumor.GetID()
	return rumor, nil
}

// checkText refuses empty, oversized and non-UTF-8 text.
func checkText(text string) error {
	switch {
	case strings.TrimSpace(text) == "":
		return fmt.Errorf("%w: empty", ErrBadText)
	case len(text) > MaxTextBytes:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(text), MaxTextBytes)
	case !utf8.ValidString(text):
		return fmt.Errorf("%w: not valid UTF-8", ErrBadText)
	}
	return nil
}

// Seal returns the kind 13 seal of NIP-59 ("Seal"): content the NIP-44 v2 encryption of the
// rumor's JSON (without sig) from senderSK to recipient, no tags, created_at as given, signed
// by senderSK. The rumor's author must be senderSK's pubkey (a reader checks that the seal and
// the rumor have the same author, NIP-17). Errors: ErrBadSenderKey, ErrBadRecipient,
// ErrTooLong (over NIP-44's plaintext limit), ErrBadWrap (the rumor's author is not the
// sender, or the rumor is signed).
func Seal(rumor nostr.Event, senderSK, recipient string, createdAt nostr.Timestamp) (nostr.Event, error) {
	senderPub, err := nostr.GetPublicKey(senderSK)
	if err != nil || !validSecretKey(senderSK) {
		return nostr.Event{}, ErrBadSenderKey // the key itself never goes into an error
	}
	if rumor.PubKey != senderPub {
		return nostr.Event{}, fmt.Errorf("%w: the rumor's author %s is not the sender %s", ErrBadWrap, rumor.PubKey, senderPub)
	}
	if rumor.Sig != "" {
		return nostr.Event{}, fmt.Errorf("%w: the rumor is signed (NIP-17: kind 14 must never be signed)", ErrBadWrap)
	}
	content, err := encrypt(rumor.String(), senderSK, recipient)
	if err != nil {
		return nostr.Event{}, err
	}
	seal := nostr.Event{CreatedAt: createdAt, Kind: nostr.KindSeal, Tags: nostr.Tags{}, Content: content}
	if err := seal.Sign(senderSK); err != nil {
		return nostr.Event{}, fmt.Errorf("%w: %v", ErrBadSenderKey, err)
	}
	return seal, nil
}

// Wrap returns the kind 1059 gift wrap of NIP-59 ("Gift Wrap"): content the NIP-44 v2
// encryption of the seal's JSON from oneTimeSK to recipient, one ["p", recipient] tag,
// created_at as given, signed by oneTimeSK — a key used for this wrap only, so that the wrap
// does not show who sent it. Errors: ErrBadRecipient, ErrBadSenderKey (oneTimeSK invalid),
// ErrTooLong.
func Wrap(seal nostr.Event, recipient, oneTimeSK string, createdAt nostr.Timestamp) (nostr.Event, error) {
	if !validSecretKey(oneTimeSK) {
		return nostr.Event{}, fmt.Errorf("%w: the one-time key", ErrBadSenderKey)
	}
	content, err := encrypt(seal.String(), oneTimeSK, recipient)
	if err != nil {
		return nostr.Event{}, err
	}
	wrap := nostr.Event{CreatedAt: createdAt, Kind: nostr.KindGiftWrap, Tags: nostr.Tags{{"p", recipient}}, Content: content}
	if err := wrap.Sign(oneTimeSK); err != nil {
		return nostr.Event{}, fmt.Errorf("%w: the one-time key: %v", ErrBadSenderKey, err)
	}
	return wrap, nil
}

// GiftWrap seals rumor from senderSK to recipient and wraps the seal with a fresh one-time key,
// the seal's and the wrap's created_at each drawn uniformly at random from the TimestampWindow
// before now (crypto/rand). Errors: those of Seal and Wrap.
func GiftWrap(rumor nostr.Event, senderSK, recipient string, now time.Time) (nostr.Event, error) {
	return giftWrap(rumor, senderSK, recipient, now, rand.Reader)
}

func giftWrap(rumor nostr.Event, senderSK, recipient string, now time.Time, rnd io.Reader) (nostr.Event, error) {
	sealAt, err := randomPast(now, rnd)
	if err != nil {
		return nostr.Event{}, err
	}
	seal, err := Seal(rumor, senderSK, recipient, sealAt)
	if err != nil {
		return nostr.Event{}, err
	}
	wrapAt, err := randomPast(now, rnd)
	if err != nil {
		return nostr.Event{}, err
	}
	return Wrap(seal, recipient, nostr.GeneratePrivateKey(), wrapAt)
}

// randomPast draws a time uniformly from [now−TimestampWindow, now], to the second.
func randomPast(now time.Time, rnd io.Reader) (nostr.Timestamp, error) {
	n, err := rand.Int(rnd, big.NewInt(int64(TimestampWindow/time.Second)+1))
	if err != nil {
		return 0, fmt.Errorf("notify: random timestamp: %w", err)
	}
	return nostr.Timestamp(now.Unix() - n.Int64()), nil
}

// Unwrap opens a gift wrap addressed to recipientSK's pubkey and returns the rumor, checking
// what a NIP-17 reader must: the wrap is kind 1059 with a valid id and signature and p-tags us;
// the seal inside is kind 13, has no tags and a valid id and signature; the rumor inside is
// kind 14, unsigned, its id is the hash of its fields, and its author is the seal's author
// (NIP-17: otherwise anyone could impersonate the sender). Errors wrap ErrBadWrap, naming the
// check that failed.
func Unwrap(wrap nostr.Event, recipientSK string) (nostr.Event, error) {
	me, err := nostr.GetPublicKey(recipientSK)
	if err != nil || !validSecretKey(recipientSK) {
		return nostr.Event{}, ErrBadSenderKey
	}
	if wrap.Kind != nostr.KindGiftWrap {
		return nostr.Event{}, fmt.Errorf("%w: kind %d, want %d", ErrBadWrap, wrap.Kind, nostr.KindGiftWrap)
	}
	if ok, _ := wrap.CheckSignature(); !ok || !wrap.CheckID() {
		return nostr.Event{}, fmt.Errorf("%w: the wrap's id or signature is invalid", ErrBadWrap)
	}
	if p := wrap.Tags.GetFirst([]string{"p", ""}); p == nil || (*p)[1] != me {
		return nostr.Event{}, fmt.Errorf("%w: the wrap is not p-tagged to %s", ErrBadWrap, me)
	}
	var seal nostr.Event
	if err := decryptJSON(wrap.Content, recipientSK, wrap.PubKey, &seal); err != nil {
		return nostr.Event{}, fmt.Errorf("%w: seal: %v", ErrBadWrap, err)
	}
	if seal.Kind != nostr.KindSeal {
		return nostr.Event{}, fmt.Errorf("%w: seal kind %d, want %d", ErrBadWrap, seal.Kind, nostr.KindSeal)
	}
	if len(seal.Tags) != 0 {
		return nostr.Event{}, fmt.Errorf("%w: the seal has tags", ErrBadWrap)
	}
	if ok, _ := seal.CheckSignature(); !ok || !seal.CheckID() {
		return nostr.Event{}, fmt.Errorf("%w: the seal's id or signature is invalid", ErrBadWrap)
	}
	var rumor nostr.Event
	if err := decryptJSON(seal.Content, recipientSK, seal.PubKey, &rumor); err != nil {
		return nostr.Event{}, fmt.Errorf("%w: rumor: %v", ErrBadWrap, err)
	}
	switch {
	case rumor.Kind != nostr.KindDirectMessage:
		return nostr.Event{}, fmt.Errorf("%w: rumor kind %d, want %d", ErrBadWrap, rumor.Kind, nostr.KindDirectMessage)
	case rumor.PubKey != seal.PubKey:
		return nostr.Event{}, fmt.Errorf("%w: the rumor's author %s is not the seal's %s", ErrBadWrap, rumor.PubKey, seal.PubKey)
	case rumor.Sig != "":
		return nostr.Event{}, fmt.Errorf("%w: the rumor is signed", ErrBadWrap)
	case !rumor.CheckID():
		return nostr.Event{}, fmt.Errorf("%w: the rumor's id is not the hash of its fields", ErrBadWrap)
	}
	return rumor, nil
}

// encrypt is NIP-44 v2 from sk to pub; too-long plaintext is ErrTooLong.
func encrypt(plaintext, sk, pub string) (string, error) {
	if !validPubKey(pub) {
		return "", fmt.Errorf("%w: %q is not a hex pubkey", ErrBadRecipient, pub)
	}
	if len(plaintext) > nip44.MaxPlaintextSize {
		return "", fmt.Errorf("%w: %d bytes to encrypt, NIP-44 allows %d", ErrTooLong, len(plaintext), nip44.MaxPlaintextSize)
	}
	key, err := nip44.GenerateConversationKey(pub, sk)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBadRecipient, pub, err)
	}
	return nip44.Encrypt(plaintext, key)
}

// decryptJSON is NIP-44 v2 decryption of an event's content from pub to sk, then JSON.
func decryptJSON(content, sk, pub string, v *nostr.Event) error {
	key, err := nip44.GenerateConversationKey(pub, sk)
	if err != nil {
		return err
	}
	plain, err := nip44.Decrypt(content, key)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(plain), v)
}

// validPubKey: 64 lowercase hex characters of an x-only point on secp256k1 (BIP-340).
func validPubKey(pk string) bool {
	return len(pk) == 64 && strings.ToLower(pk) == pk && nostr.IsValidPublicKey(pk)
}

// validSecretKey: 64 hex characters of a scalar in [1, n−1].
func validSecretKey(sk string) bool {
	b, err := hex.DecodeString(sk)
	if err != nil || len(b) != 32 {
		return false
	}
	var s btcec.ModNScalar
	if overflow := s.SetByteSlice(b); overflow || s.IsZero() {
		return false
	}
	pub, err := nostr.GetPublicKey(sk)
	return err == nil && validPubKey(pub)
}
