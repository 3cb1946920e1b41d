package notify

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
)

func TestParseRecipients(t *testing.T) {
	_, senderSK, receiverSK := loadExample(t)
	sender := mustPub(t, senderSK)
	receiver := mustPub(t, receiverSK)
	npub, _ := nip19.EncodePublicKey(receiver)
	nsec, _ := nip19.EncodePrivateKey(receiverSK)
	cases := []struct {
		in   string
		want []string
		err  error
	}{
		{"", nil, nil},
		{" , ,", nil, nil},
		{npub, []string{receiver}, nil},
		{" " + npub + " , " + strings.ToUpper(sender) + "," + receiver, []string{receiver, sender}, nil},
		{"npub1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnxm8tf", nil, ErrBadRecipient},
		{npub[:len(npub)-1] + "q", nil, ErrBadRecipient},
		{nsec, nil, ErrBadRecipient},
		{receiver[:63], nil, ErrBadRecipient},
		{strings.Repeat("f", 64), nil, ErrBadRecipient},
		{"alice@example.com", nil, ErrBadRecipient},
	}
	for _, c := range cases {
		got, err := ParseRecipients(c.in)
		if !errors.Is(err, c.err) || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("ParseRecipients(%q) = %v, %v; want %v, %v", c.in, got, err, c.want, c.err)
		}
		if err != nil && strings.Contains(err.Error(), nsec) {
			t.Errorf("the error echoes an nsec: %v", err)
		}
	}
}

func mustPub(t testing.TB, sk string) string {
	t.Helper()
	p, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzParseRecipient(f *testing.F) {
	f.Add("npub1sn0wdenkukak0d9dfczzeacvhkrgz92ak56egt7vdgzn8pv2wfqqhrjdv9")
	f.Add("44900586091b284416a0c001f677f9c49f7639a55c3f1e2ec130a8e1a7998e1b")
	f.Add("nsec1w8udu59ydjvedgs3yv5qccshcj8k05fh3l60k9x57asjrqdpa00qkmr89m")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pk, err := ParseRecipient(s)
		if err != nil {
			if !errors.Is(err, ErrBadRecipient) {
				t.Fatalf("error %v does not wrap ErrBadRecipient", err)
			}
			return
		}
		if !validPubKey(pk) {
			t.Fatalf("accepted %q as %q", s, pk)
		}
	})
}
