package notify

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nbd-wtf/go-nostr/nip19"
)

// ParseRecipient returns the hex pubkey of s: an npub (NIP-19) or 64 hex characters (either
// case) of an x-only public key on secp256k1 (BIP-340). Errors wrap ErrBadRecipient and quote s
// (a public key is not secret); an nsec is refused without echoing it.
func ParseRecipient(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "nsec1"):
		return "", fmt.Errorf("%w: that is a secret key (nsec), give the operator's public key (npub)", ErrBadRecipient)
	case strings.HasPrefix(s, "npub1"):
		prefix, v, err := nip19.Decode(s)
		pk, _ := v.(string)
		if err != nil || prefix != "npub" || !validPubKey(pk) {
			return "", fmt.Errorf("%w: %q is not a valid npub", ErrBadRecipient, s)
		}
		return pk, nil
	}
	pk := strings.ToLower(s)
	if !validPubKey(pk) {
		return "", fmt.Errorf("%w: %q is neither an npub nor a 64-character hex public key", ErrBadRecipient, s)
	}
	return pk, nil
}

// ParseRecipients splits a comma-separated list of npubs or hex pubkeys (the format of
// COSIGNER_NOTIFY_NPUB), and returns the hex pubkeys in order, duplicates dropped. Empty
// entries are skipped; an empty list gives nil and no error (notifications off). Errors: those
// of ParseRecipient, for the first bad entry.
func ParseRecipients(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		pk, err := ParseRecipient(s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, pk) {
			out = append(out, pk)
		}
	}
	return out, nil
}
