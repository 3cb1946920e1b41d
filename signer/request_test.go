package signer

import (
	"errors"
	"testing"

	"github.com/custodyagents/cosigner/nip46"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(`{"id":"1","method":"sign_event","params":["{\"kind\":1,\"content\":\"\"}"]}`)
	f.Add(`{"id":"1","method":"connect","params":["x",null]}`)
	f.Add(`{"id":7,"method":"ping"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		id, method, params, err := nip46.ParseRequest(s)
		if err == nil && (id == "" || method == "") {
			t.Fatalf("accepted %q without id or method", s)
		}
		if err != nil {
			var me *nip46.MethodError
			if !errors.As(err, &me) || me.Code != nip46.CodeInvalidRequest {
				t.Fatalf("error is not invalid_request: %v", err)
			}
		}
		_ = params
		if method == "sign_event" && len(params) > 0 {
			if _, err := parseEventTemplate(params[0]); err != nil {
				var me *nip46.MethodError
				if !errors.As(err, &me) || me.Code != nip46.CodeInvalidParams {
					t.Fatalf("template error is not invalid_params: %v", err)
				}
			}
		}
	})
}
