package nip46

import "testing"

// A co-signer's remote signer and its NIP-46 client share one key: the responses its client
// gets are p-tagged to the signer too, and must not be answered as malformed requests.
func TestIsResponse(t *testing.T) {
	for _, tc := range []struct {
		plain string
		want  bool
	}{
		{`{"id":"1","result":"pong"}`, true},
		{`{"id":"1","result":"auth_url","error":"https://x"}`, true},
		{`{"id":"1","error":"policy_denied: no"}`, true},
		{`{"id":"1","method":"ping","params":[]}`, false},
		{`{"id":"1","params":[]}`, false}, // a broken request: answered with invalid_request
		{`{"id":"1","method":"","result":"x"}`, false},
		{`not json`, false},
	} {
		if got := IsResponse(tc.plain); got != tc.want {
			t.Errorf("IsResponse(%s) = %v, want %v", tc.plain, got, tc.want)
		}
	}
}
