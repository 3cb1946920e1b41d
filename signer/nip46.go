package signer

import "github.com/custodyagents/cosigner/nip46"

// The NIP-46 wire vocabulary lives in the leaf package nip46; these names keep the old signer
// API while the callers move.

// Deprecated: use nip46.KindNostrConnect.
const KindNostrConnect = nip46.KindNostrConnect

// Deprecated: use the nip46.Code* constants.
const (
	CodeInvalidParams  = nip46.CodeInvalidParams
	CodeInvalidPSBT    = nip46.CodeInvalidPSBT
	CodeWrongNetwork   = nip46.CodeWrongNetwork
	CodeNotOurWallet   = nip46.CodeNotOurWallet
	CodeUnsafePSBT     = nip46.CodeUnsafePSBT
	CodePolicyDenied   = nip46.CodePolicyDenied
	CodeUnauthorized   = nip46.CodeUnauthorized
	CodeRateLimited    = nip46.CodeRateLimited
	CodeUnknownMethod  = nip46.CodeUnknownMethod
	CodeInternal       = nip46.CodeInternal
	CodeInvalidRequest = nip46.CodeInvalidRequest
)

// Deprecated: use nip46.MethodError.
type MethodError = nip46.MethodError

// Deprecated: use nip46.Errorf.
func Errorf(code, format string, args ...any) *MethodError {
	return nip46.Errorf(code, format, args...)
}

// Deprecated: use nip46.AsMethodError.
func AsMethodError(err error) *MethodError { return nip46.AsMethodError(err) }

// Deprecated: use nip46.RemoteError.
type RemoteError = nip46.RemoteError

// Deprecated: use nip46.IsResponse.
func IsResponse(plain string) bool { return nip46.IsResponse(plain) }

// Deprecated: use nip46.ParseRequest.
func ParseRequest(plain string) (id, method string, params []string, err error) {
	return nip46.ParseRequest(plain)
}

// Deprecated: use nip46.DefaultPerms.
const DefaultPerms = nip46.DefaultPerms

// Deprecated: use nip46.MaxPerms.
const MaxPerms = nip46.MaxPerms

// Deprecated: use nip46.Perm.
type Perm = nip46.Perm

// Deprecated: use nip46.Perms.
type Perms = nip46.Perms

// Deprecated: use nip46.NeedsPermission.
func NeedsPermission(method string) bool { return nip46.NeedsPermission(method) }

// Deprecated: use nip46.ParsePerms.
func ParsePerms(s string) (Perms, error) { return nip46.ParsePerms(s) }

// Deprecated: use nip46.MustParsePerms.
func MustParsePerms(s string) Perms { return nip46.MustParsePerms(s) }

// Deprecated: use nip46.GrantAtConnect.
func GrantAtConnect(secretPerms string, secretHasPerms bool, requested string) (Perms, error) {
	return nip46.GrantAtConnect(secretPerms, secretHasPerms, requested)
}
