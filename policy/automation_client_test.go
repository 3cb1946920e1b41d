package policy

import (
	"strings"
	"testing"
	"time"
)

// A PSBT an automation built is decided as client "automation:<name>": allowed to sign while the
// automation is in the policy, refused otherwise, and never for other methods.
func TestAuthorizeAutomationClient(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nclients:\n  - {name: c, pubkey: "+strings.Repeat("ab", 32)+"}\nlimits:\n  max_per_tx: 1 BTC\n"))
	if err != nil {
		t.Fatal(err)
	}
	p.Automations = []Automation{{Name: "sweep"}}
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		client, method string
		want           Outcome
	}{
		{"automation:sweep", "sign_psbt", Allow},
		{"automation:sweep", "sign_event", Unauthorized},
		{"automation:other", "sign_psbt", Unauthorized},
		{"automation:", "sign_psbt", Unauthorized},
		{"sweep", "sign_psbt", Unauthorized},
	} {
		if d := Authorize(p, tc.client, tc.method, now); d.Outcome != tc.want {
			t.Errorf("Authorize(%q, %q) = %s (%s), want %s", tc.client, tc.method, d.Outcome, d.Reason, tc.want)
		}
		if d := Evaluate(p, Input{Client: tc.client, Method: tc.method, Now: now}); tc.want == Unauthorized && d.Outcome != Unauthorized {
			t.Errorf("Evaluate(%q, %q) = %s", tc.client, tc.method, d.Outcome)
		}
	}
}
