package nip46

import "fmt"

// HeldError is returned by a method handler (for example sign_psbt's) when the request is
// neither answered nor refused yet: the policy holds it (a cooling-off delay, approvals by named
// pubkeys). The remote signer answers the client with the auth_url response
// {"id":<id>,"result":"auth_url","error":URL} (NIP-46, "Auth Challenges"); the real answer
// follows later under the same request id.
type HeldError struct {
	// URL is where a person can see (and act on) the held request. Never empty.
	URL string
	// Reason says, for people and logs, why the request is held (rule name and words).
	Reason string
}

func (e *HeldError) Error() string { return fmt.Sprintf("held: %s (%s)", e.Reason, e.URL) }
