package outbound

import "time"

// View is one proposal as `cosigner proposals show --json` prints it (docs/automations.md);
// `list --json` prints an array of them without Timeline. Times are UTC, written in RFC 3339
// with nanoseconds. Texts a co-signer or the chain wrote (Reason, details) may quote a bunker
// URI: whoever prints them redacts its connect secret.
type View struct {
	ID           string         `json:"id"`
	Automation   string         `json:"automation"`
	Trigger      string         `json:"trigger"`
	State        string         `json:"state"`
	Reason       string         `json:"reason"`
	TxID         string         `json:"txid"`
	UnsignedTxID string         `json:"unsigned_txid"`
	FeeSat       int64          `json:"fee_sat"`
	FeeRate      float64        `json:"feerate_sat_vb"`
	Replaces     string         `json:"replaces"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
	Cosigners    []CosignerView `json:"cosigners"`
	Timeline     []EventView    `json:"timeline,omitempty"`
}

// CosignerView is a co-signer's part in a proposal: its pubkey (hex) and state (waiting, held,
// signed, denied or error) with a detail.
type CosignerView struct {
	PubKey string `json:"pubkey"`
	State  string `json:"state"`
	Detail string `json:"detail"`
}

// EventView is one entry of a proposal's timeline (proposed, self_signed, requested, held,
// answered, denied, finalized, broadcast, confirmed, bumped, replaced, abandoned, notified).
type EventView struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
}

// Events returns the timeline's entries named event, in order.
func (v View) Events(event string) []EventView {
	var out []EventView
	for _, e := range v.Timeline {
		if e.Event == event {
			out = append(out, e)
		}
	}
	return out
}
