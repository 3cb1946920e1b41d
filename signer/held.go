package signer

import (
	"context"
	"fmt"
)

// HeldError is returned by a method handler (for example PSBTHandler.SignPSBT) when the request
// is neither answered nor refused yet: the policy holds it (a cooling-off delay, approvals by
// named pubkeys). The remote signer answers the client with the NIP-46 auth_url response
// {"id":<id>,"result":"auth_url","error":URL} (NIP-46, "Auth Challenges"); the real answer
// follows later on the same request id through Responder.Respond.
type HeldError struct {
	// URL is where a person can see (and act on) the held request. Never empty.
	URL string
	// Reason says, for people and logs, why the request is held (rule name and words).
	Reason string
}

func (e *HeldError) Error() string { return fmt.Sprintf("held: %s (%s)", e.Reason, e.URL) }

// Responder delivers the late answer to a request that was answered with auth_url: result on
// success, or err (its MethodError wire form, see AsMethodError) on refusal. It publishes to
// every relay the client uses. It returns an error only if no relay accepted the response.
// Implemented by *RemoteSigner.
type Responder interface {
	Respond(ctx context.Context, client, requestID, result string, err error) error
}
