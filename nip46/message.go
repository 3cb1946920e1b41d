package nip46

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// KindNostrConnect is the NIP-46 event kind that carries requests and responses.
const KindNostrConnect = 24133

// Method names (NIP-46 "Methods/Commands"; sign_psbt, get_wallet, psbt_status and approve are
// this co-signer's extensions).
const (
	MethodConnect      = "connect"
	MethodPing         = "ping"
	MethodGetPublicKey = "get_public_key"
	MethodSwitchRelays = "switch_relays"
	MethodLogout       = "logout"
	MethodSignEvent    = "sign_event"
	MethodNIP44Encrypt = "nip44_encrypt"
	MethodNIP44Decrypt = "nip44_decrypt"
	MethodNIP04Encrypt = "nip04_encrypt"
	MethodNIP04Decrypt = "nip04_decrypt"
	MethodSignPSBT     = "sign_psbt"
	MethodGetWallet    = "get_wallet"
	MethodPSBTStatus   = "psbt_status"
	MethodApprove      = "approve"
)

// ResultAuthURL is a response's result while the request is held; the URL is in its error
// field (NIP-46 "Auth Challenges").
const ResultAuthURL = "auth_url"

// MaxRequestIDLength bounds a request id in characters (longer ids are refused as
// invalid_request).
const MaxRequestIDLength = 128

// Request is a NIP-46 request payload as it travels (encrypted) in a kind-24133 event:
// {"id","method","params":[strings]}.
type Request struct {
	ID     string   `json:"id"`
	Method string   `json:"method"`
	Params []string `json:"params"`
}

// Response is a NIP-46 response payload: {"id","result","error"}. An auth_url response has
// Result "auth_url" and the URL in Error (NIP-46 "Auth Challenges").
type Response struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// AuthURL reports whether r is an auth_url response and its URL: the real answer follows under
// the same id.
func (r Response) AuthURL() (string, bool) {
	return r.Error, r.Result == ResultAuthURL && r.Error != ""
}

// Outcome is a final response as a call's return: its result, or *RemoteError for an error.
func (r Response) Outcome() (string, error) {
	if r.Error != "" {
		return "", &RemoteError{Text: r.Error}
	}
	return r.Result, nil
}

// RemoteError is an error response from a remote signer: its "error" string as sent.
type RemoteError struct{ Text string }

func (e *RemoteError) Error() string { return "remote signer: " + e.Text }

// Code is the stable code before the first colon ("unauthorized", "policy_denied", …) or "".
func (e *RemoteError) Code() string {
	code, _, ok := strings.Cut(e.Text, ":")
	if !ok || !validMethodName(code) {
		return ""
	}
	return code
}

// IsResponse reports whether a decrypted NIP-46 payload is a response ({"id","result","error"}
// without "method"), not a request.
func IsResponse(plain string) bool {
	var m struct {
		Method *string          `json:"method"`
		Result *json.RawMessage `json:"result"`
		Error  *json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(plain), &m) != nil {
		return false
	}
	return m.Method == nil && (m.Result != nil || m.Error != nil)
}

// wireRequest is a request as decoded before its params are checked.
type wireRequest struct {
	ID     string          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// ParseRequest decodes a NIP-46 request payload {"id","method","params":[strings]}. It returns
// the id even when the rest is malformed (so the error can be answered); an empty id means the
// payload cannot be answered at all. Errors are *MethodError (invalid_request).
func ParseRequest(plain string) (id, method string, params []string, err error) {
	var wr wireRequest
	if jerr := json.Unmarshal([]byte(plain), &wr); jerr != nil {
		// A payload that is JSON with a string id but wrong elsewhere is still answered.
		var idOnly struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(plain), &idOnly)
		return idOnly.ID, "", nil, Errorf(CodeInvalidRequest, "not a NIP-46 request object")
	}
	if wr.ID == "" {
		return "", wr.Method, nil, Errorf(CodeInvalidRequest, "missing id")
	}
	if len(wr.ID) > MaxRequestIDLength {
		return "", wr.Method, nil, Errorf(CodeInvalidRequest, "id longer than 128 characters")
	}
	if err := decodeParams(wr.Params, &params); err != nil {
		return wr.ID, wr.Method, nil, Errorf(CodeInvalidRequest, "%v", err)
	}
	if wr.Method == "" {
		return wr.ID, "", params, Errorf(CodeInvalidRequest, "missing method")
	}
	return wr.ID, wr.Method, params, nil
}

func decodeParams(raw json.RawMessage, out *[]string) error {
	if len(raw) == 0 || string(raw) == "null" {
		*out = nil
		return nil
	}
	var anyParams []any
	if err := json.Unmarshal(raw, &anyParams); err != nil {
		return errors.New("params must be a JSON array")
	}
	ps := make([]string, len(anyParams))
	for i, p := range anyParams {
		str, ok := p.(string)
		if !ok {
			return fmt.Errorf("params[%d] must be a string", i)
		}
		ps[i] = str
	}
	*out = ps
	return nil
}

// ValidMethodName reports whether m can be a method name: 1 to 32 lower-case letters, digits and
// '_' (the same shape as an error code).
func ValidMethodName(m string) bool { return validMethodName(m) }
