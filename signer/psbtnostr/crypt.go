package psbtnostr

// crypt.go — NIP-04 as the plugin uses it (electrum-aionostr key.py: AES-256-CBC under the
// x coordinate of the ECDH point, "base64(ciphertext)?iv=base64(iv)"), through go-nostr's nip04
// with the checks its Decrypt lacks (it panics on an IV that is not 16 bytes or a ciphertext
// that is not whole blocks).

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/nbd-wtf/go-nostr/nip04"
)

// ErrUndecryptable: the content is not NIP-04 from the author to this co-signer.
var ErrUndecryptable = fmt.Errorf("psbtnostr: content does not decrypt (NIP-04)")

// Decrypt opens content from sender (hex x-only pubkey) with own secret sk (hex). Errors wrap
// ErrUndecryptable; it never panics on hostile content.
func Decrypt(content, sender, sk string) (string, error) {
	ct, iv, ok := strings.Cut(content, "?iv=")
	if !ok {
		return "", fmt.Errorf("%w: no ?iv=", ErrUndecryptable)
	}
	ivb, err := base64.StdEncoding.DecodeString(iv)
	if err != nil || len(ivb) != 16 {
		return "", fmt.Errorf("%w: the IV is not 16 bytes of base64", ErrUndecryptable)
	}
	ctb, err := base64.StdEncoding.DecodeString(ct)
	if err != nil || len(ctb) == 0 || len(ctb)%16 != 0 {
		return "", fmt.Errorf("%w: the ciphertext is not whole AES blocks of base64", ErrUndecryptable)
	}
	key, err := nip04.ComputeSharedSecret(sender, sk)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	pt, err := nip04.Decrypt(content, key)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	// PKCS#7: go-nostr checks only that the pad length fits; refuse a zero or wrong pad too.
	if n := len(ctb) - len(pt); n < 1 || n > 16 {
		return "", fmt.Errorf("%w: bad padding", ErrUndecryptable)
	}
	return pt, nil
}

// Encrypt seals plaintext from sk (hex) to recipient (hex x-only pubkey), NIP-04.
func Encrypt(plaintext, recipient, sk string) (string, error) {
	key, err := nip04.ComputeSharedSecret(recipient, sk)
	if err != nil {
		return "", err
	}
	return nip04.Encrypt(plaintext, key)
}
