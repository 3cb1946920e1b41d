package nip46

import "encoding/json"

// Call is one request as a method handler sees it: the payload of a kind-24133 event
// (Request's id, method and params) from an authenticated, connected client, with the event
// that carried it.
type Call struct {
	Client  string // client pubkey, hex
	ID      string // the client's request id
	Method  string
	Params  []string
	EventID string // id of the kind-24133 event that carried it, hex
	// Event is that kind-24133 event as JSON (NIP-01 form), signature checked: the client's
	// Nostr signature over this request, kept as evidence (for example with approvals). Nil for
	// calls made without an event (automations, tests).
	Event json.RawMessage
}
