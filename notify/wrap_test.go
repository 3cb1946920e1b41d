package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip44"
	"github.com/nbd-wtf/go-nostr/nip59"
)

// nip17Example is the example of NIP-17 ("Examples"): "Hola, que tal?" gift-wrapped to the
// receiver and to the sender, with both secret keys.
// https://github.com/nostr-protocol/nips/blob/master/17.md#examples
type nip17Example struct {
	Message      string      `json:"message"`
	SenderNsec   string      `json:"sender_nsec"`
	ReceiverNsec string      `json:"receiver_nsec"`
	ToReceiver   nostr.Event `json:"to_receiver"`
	ToSender     nostr.Event `json:"to_sender"`
}

func loadExample(t testing.TB) (ex nip17Example, senderSK, receiverSK string) {
	t.Helper()
	b, err := os.ReadFile("testdata/nip17_example.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	decode := func(nsec string) string {
		_, v, err := nip19.Decode(nsec)
		if err != nil {
			t.Fatal(err)
		}
		return v.(string)
	}
	return ex, decode(ex.SenderNsec), decode(ex.ReceiverNsec)
}

func TestUnwrapNIP17Example(t *testing.T) {
	ex, senderSK, receiverSK := loadExample(t)
	senderPub, _ := nostr.GetPublicKey(senderSK)
	receiverPub, _ := nostr.GetPublicKey(receiverSK)

	toReceiver, err := Unwrap(ex.ToReceiver, receiverSK)
	if err != nil {
		t.Fatalf("receiver's wrap: %v", err)
	}
	toSender, err := Unwrap(ex.ToSender, senderSK)
	if err != nil {
		t.Fatalf("sender's wrap: %v", err)
	}
	for name, r := range map[string]nostr.Event{"receiver's": toReceiver, "sender's": toSender} {
		if r.Content != ex.Message || r.PubKey != senderPub || r.Kind != nostr.KindDirectMessage {
			t.Errorf("%s rumor: kind %d author %s content %q, want 14 from %s %q", name, r.Kind, r.PubKey, r.Content, senderPub, ex.Message)
		}
		if p := r.Tags.GetFirst([]string{"p", ""}); p == nil || (*p)[1] != receiverPub {
			t.Errorf("%s rumor: p tag %v, want %s", name, p, receiverPub)
		}
	}
	if toReceiver.ID != toSender.ID {
		t.Errorf("the two wraps carry different rumors: %s and %s", toReceiver.ID, toSender.ID)
	}
	// Each wrap opens only with the key it is p-tagged to.
	if _, err := Unwrap(ex.ToReceiver, senderSK); !errors.Is(err, ErrBadWrap) {
		t.Errorf("receiver's wrap opened with the sender's key: %v", err)
	}
}

func newKey(t testing.TB) (sk, pub string) {
	t.Helper()
	sk = nostr.GeneratePrivateKey()
	pub, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, pub
}

func TestGiftWrapRoundTrip(t *testing.T) {
	senderSK, senderPub := newKey(t)
	op1SK, op1 := newKey(t)
	op2SK, op2 := newKey(t)
	now := time.Now()
	text := "proposal p1 (sweep-to-vault) is held by co-signer B: approve at https://example/approve?id=1 ✓"
	rumor, err := Rumor(senderPub, []string{op1, op2, op1}, text, now)
	if err != nil {
		t.Fatal(err)
	}
	if rumor.Sig != "" || rumor.Kind != 14 || rumor.CreatedAt != nostr.Timestamp(now.Unix()) || !rumor.CheckID() {
		t.Fatalf("rumor: %v", rumor)
	}
	if got := rumor.Tags.GetAll([]string{"p", ""}); len(got) != 2 || got[0][1] != op1 || got[1][1] != op2 {
		t.Fatalf("rumor p tags %v, want one each for %s and %s", got, op1, op2)
	}

	for _, to := range []struct{ sk, pub string }{{op1SK, op1}, {op2SK, op2}, {senderSK, senderPub}} {
		wrap, err := GiftWrap(rumor, senderSK, to.pub, now)
		if err != nil {
			t.Fatal(err)
		}
		// The wrap: kind 1059, a valid signature by a key that is not the sender's, one p tag,
		// nothing in it that names the sender, created_at in the two days before now.
		if wrap.Kind != 1059 || len(wrap.Tags) != 1 || wrap.Tags[0][0] != "p" || wrap.Tags[0][1] != to.pub {
			t.Errorf("wrap kind %d tags %v", wrap.Kind, wrap.Tags)
		}
		if ok, _ := wrap.CheckSignature(); !ok {
			t.Error("wrap signature invalid")
		}
		if wrap.PubKey == senderPub {
			t.Error("the wrap is signed by the sender's key")
		}
		if to.pub != senderPub && strings.Contains(wrap.String(), senderPub) {
			t.Error("the wrap's JSON contains the sender's pubkey")
		}
		if strings.Contains(wrap.String(), "sweep") {
			t.Error("the wrap's JSON contains the text")
		}
		checkPast(t, "wrap", wrap.CreatedAt, now)

		// The seal, opened by hand: kind 13, no tags, signed by the sender, in the window.
		key, _ := nip44.GenerateConversationKey(wrap.PubKey, to.sk)
		plain, err := nip44.Decrypt(wrap.Content, key)
		if err != nil {
			t.Fatal(err)
		}
		var seal nostr.Event
		if err := json.Unmarshal([]byte(plain), &seal); err != nil {
			t.Fatal(err)
		}
		if ok, _ := seal.CheckSignature(); !ok || seal.Kind != 13 || len(seal.Tags) != 0 || seal.PubKey != senderPub {
			t.Errorf("seal: kind %d tags %v author %s valid %v", seal.Kind, seal.Tags, seal.PubKey, ok)
		}
		if bytes.Contains([]byte(plain), []byte(`"sig":""`)) {
			t.Error("the rumor carries an empty sig field")
		}
		checkPast(t, "seal", seal.CreatedAt, now)

		// Our reader and go-nostr's (nip59.GiftUnwrap) get the same rumor back.
		mine, err := Unwrap(wrap, to.sk)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := nip59.GiftUnwrap(wrap, func(other, ciphertext string) (string, error) {
			k, err := nip44.GenerateConversationKey(other, to.sk)
			if err != nil {
				return "", err
			}
			return nip44.Decrypt(ciphertext, k)
		})
		if err != nil {
			t.Fatalf("go-nostr nip59.GiftUnwrap: %v", err)
		}
		for _, got := range []nostr.Event{mine, theirs} {
			if got.ID != rumor.ID || got.Content != text || got.PubKey != senderPub || got.Kind != 14 {
				t.Errorf("unwrapped %v, want %v", got, rumor)
			}
		}
	}
}

func checkPast(t *testing.T, what string, at nostr.Timestamp, now time.Time) {
	t.Helper()
	if lo := now.Add(-TimestampWindow).Unix(); int64(at) < lo || int64(at) > now.Unix() {
		t.Errorf("%s created_at %d outside [%d, %d]", what, at, lo, now.Unix())
	}
}

// TestRandomPast checks the bounds with the extreme random inputs, and that draws spread over
// the window (200 draws all in one half: probability 2^-199).
func TestRandomPast(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	window := int64(TimestampWindow / time.Second)
	// (crypto/rand.Int draws 18 bits and draws again above the bound: 0x02… is in range.)
	for _, fill := range []byte{0x00, 0x01, 0x02} {
		at, err := randomPast(now, bytes.NewReader(bytes.Repeat([]byte{fill}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		if d := now.Unix() - int64(at); d < 0 || d > window {
			t.Errorf("fill %#x: %d seconds in the past, want 0..%d", fill, d, window)
		}
	}
	var older, newer int
	for range 200 {
		at, err := randomPast(now, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d := now.Unix() - int64(at)
		if d < 0 || d > window {
			t.Fatalf("%d seconds in the past, want 0..%d", d, window)
		}
		if d > window/2 {
			older++
		} else {
			newer++
		}
	}
	if older == 0 || newer == 0 {
		t.Errorf("200 draws: %d in the older day, %d in the newer: not spread over two days", older, newer)
	}
}

func TestRumorRefuses(t *testing.T) {
	_, sender := newKey(t)
	_, op := newKey(t)
	cases := []struct {
		name   string
		sender string
		to     []string
		text   string
		want   error
	}{
		{"empty text", sender, []string{op}, "", ErrBadText},
		{"blank text", sender, []string{op}, " \n\t", ErrBadText},
		{"not UTF-8", sender, []string{op}, "caf\xe9", ErrBadText},
		{"too long", sender, []string{op}, strings.Repeat("x", MaxTextBytes+1), ErrTooLong},
		{"no recipients", sender, nil, "hi", ErrNoRecipients},
		{"npub is not hex", sender, []string{"npub1xyz"}, "hi", ErrBadRecipient},
		{"upper-case hex", sender, []string{strings.ToUpper(op)}, "hi", ErrBadRecipient},
		{"not on the curve", sender, []string{strings.Repeat("f", 64)}, "hi", ErrBadRecipient},
		{"bad sender", "abc", []string{op}, "hi", ErrBadSenderKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Rumor(c.sender, c.to, c.text, time.Now()); !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
		})
	}
	// The longest text of printable characters fits, even when JSON escaping doubles it.
	quotes, err := Rumor(sender, []string{op}, strings.Repeat(`"`, MaxTextBytes), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	qSK, qPub := newKey(t)
	quotes.PubKey = qPub
	quotes.ID = quotes.GetID()
	if _, err := GiftWrap(quotes, qSK, op, time.Now()); err != nil {
		t.Errorf("%d quotes: %v", MaxTextBytes, err)
	}
	// Control characters are escaped six times longer: that seal is over NIP-44's limit.
	long := strings.Repeat("\x01", MaxTextBytes)
	r, err := Rumor(sender, []string{op}, long, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	senderSK, senderPub := newKey(t)
	r.PubKey = senderPub
	r.ID = r.GetID()
	if _, err := GiftWrap(r, senderSK, op, time.Now()); !errors.Is(err, ErrTooLong) {
		t.Errorf("a seal over NIP-44's limit: %v, want ErrTooLong", err)
	}
}

// craft builds a wrap by hand around a seal (as a hostile or broken sender could).
func craft(t *testing.T, seal nostr.Event, to string) nostr.Event {
	t.Helper()
	w, err := Wrap(seal, to, nostr.GeneratePrivateKey(), nostr.Now())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sealOf encrypts any rumor JSON from sk to `to` and signs the seal, without Seal's checks.
func sealOf(t *testing.T, rumorJSON, sk, to string, tags nostr.Tags) nostr.Event {
	t.Helper()
	k, _ := nip44.GenerateConversationKey(to, sk)
	c, err := nip44.Encrypt(rumorJSON, k)
	if err != nil {
		t.Fatal(err)
	}
	s := nostr.Event{Kind: 13, CreatedAt: nostr.Now(), Tags: tags, Content: c}
	if err := s.Sign(sk); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUnwrapRefuses(t *testing.T) {
	senderSK, sender := newKey(t)
	opSK, op := newKey(t)
	_, other := newKey(t)
	rumor, err := Rumor(sender, []string{op}, "hello", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, err := GiftWrap(rumor, senderSK, op, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unwrap(good, opSK); err != nil {
		t.Fatalf("good wrap: %v", err)
	}
	impostor := rumor
	impostor.PubKey = other
	impostor.ID = impostor.GetID()
	signed := rumor
	if err := signed.Sign(senderSK); err != nil {
		t.Fatal(err)
	}
	kind1 := rumor
	kind1.Kind = 1
	kind1.ID = kind1.GetID()
	badID := rumor
	badID.Content = "changed"

	cases := map[string]nostr.Event{
		"wrong kind":      func() nostr.Event { w := good; w.Kind = 4; return w }(),
		"content changed": func() nostr.Event { w := good; w.Content = flip(w.Content); return w }(),
		"content changed, re-signed": func() nostr.Event {
			w := good
			w.Content = flip(w.Content)
			_ = w.Sign(nostr.GeneratePrivateKey())
			return w
		}(),
		"re-signed other p tag":    craft(t, sealOf(t, rumor.String(), senderSK, op, nostr.Tags{}), other),
		"seal with tags":           craft(t, sealOf(t, rumor.String(), senderSK, op, nostr.Tags{{"p", op}}), op),
		"rumor author not sealer":  craft(t, sealOf(t, impostor.String(), senderSK, op, nostr.Tags{}), op),
		"signed rumor":             craft(t, sealOf(t, signed.String(), senderSK, op, nostr.Tags{}), op),
		"rumor kind 1":             craft(t, sealOf(t, kind1.String(), senderSK, op, nostr.Tags{}), op),
		"rumor id not its hash":    craft(t, sealOf(t, badID.String(), senderSK, op, nostr.Tags{}), op),
		"rumor not JSON":           craft(t, sealOf(t, "hello", senderSK, op, nostr.Tags{}), op),
		"wrap content not NIP-44":  func() nostr.Event { w := good; w.Content = "hello"; _ = w.Sign(nostr.GeneratePrivateKey()); return w }(),
		"wrap signature by nobody": func() nostr.Event { w := good; w.Sig = strings.Repeat("0", 128); return w }(),
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Unwrap(w, opSK); !errors.Is(err, ErrBadWrap) {
				t.Errorf("error %v, want ErrBadWrap", err)
			}
		})
	}
	// Seal refuses to seal a rumor of another author, or a signed one.
	if _, err := Seal(impostor, senderSK, op, nostr.Now()); !errors.Is(err, ErrBadWrap) {
		t.Errorf("Seal of another's rumor: %v", err)
	}
	if _, err := Seal(signed, senderSK, op, nostr.Now()); !errors.Is(err, ErrBadWrap) {
		t.Errorf("Seal of a signed rumor: %v", err)
	}
}

// FuzzUnwrap: any event, opened with the example receiver's key, is either refused with
// ErrBadWrap or yields a rumor that passes the NIP-17 checks.
func FuzzUnwrap(f *testing.F) {
	ex, _, receiverSK := loadExample(f)
	f.Add(ex.ToReceiver.String())
	f.Add(ex.ToSender.String())
	f.Add(`{"kind":1059,"tags":[["p"]],"content":""}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		var ev nostr.Event
		if json.Unmarshal([]byte(s), &ev) != nil {
			return
		}
		r, err := Unwrap(ev, receiverSK)
		if err != nil {
			if !errors.Is(err, ErrBadWrap) {
				t.Fatalf("error %v does not wrap ErrBadWrap", err)
			}
			return
		}
		if r.Kind != 14 || r.Sig != "" || !r.CheckID() {
			t.Fatalf("accepted rumor %v", r)
		}
	})
}

// flip changes one base64 character in the middle of s.
func flip(s string) string {
	i := len(s) / 2
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}
