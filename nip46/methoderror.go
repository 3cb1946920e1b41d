package nip46

import (
	"errors"
	"fmt"
)

// Stable error codes carried in NIP-46 error responses: "<code>: <words for people>"
// (docs/nip46-clients.md).
const (
	CodeInvalidParams  = "invalid_params"
	CodeInvalidPSBT    = "invalid_psbt"
	CodeWrongNetwork   = "wrong_network"
	CodeNotOurWallet   = "not_our_wallet"
	CodeUnsafePSBT     = "unsafe_psbt"
	CodePolicyDenied   = "policy_denied"
	CodeUnauthorized   = "unauthorized"
	CodeRateLimited    = "rate_limited"
	CodeUnknownMethod  = "unknown_method"
	CodeInternal       = "internal"
	CodeInvalidRequest = "invalid_request"
)

// MethodError is an error answered to a NIP-46 client. Error() is the wire form
// "<code>: <message>".
type MethodError struct {
	Code    string
	Message string
}

func (e *MethodError) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a MethodError with a formatted message.
func Errorf(code, format string, args ...any) *MethodError {
	return &MethodError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsMethodError returns err as a MethodError; any other error becomes "internal: request
// failed" so that internal details (paths, SQL, keys) never reach a client.
func AsMethodError(err error) *MethodError {
	var me *MethodError
	if errors.As(err, &me) {
		return me
	}
	return &MethodError{Code: CodeInternal, Message: "the co-signer could not process this request; see its log"}
}
