package descriptor

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Parse wraps exactly one of these
// (test with errors.Is) inside a *ParseError that says where the problem is.
var (
	// ErrSyntax: the text is not a well-formed descriptor (BIP-380 grammar).
	ErrSyntax = errors.New("descriptor syntax error")
	// ErrChecksum: the #checksum is malformed or does not match (BIP-380 "Checksum").
	ErrChecksum = errors.New("descriptor checksum error")
	// ErrMissingChecksum: RequireChecksum was given and the descriptor has no #checksum.
	ErrMissingChecksum = errors.New("descriptor checksum missing")
	// ErrUnsupported: valid descriptor syntax that this package does not handle (yet).
	ErrUnsupported = errors.New("unsupported descriptor")
	// ErrPrivateKey: a private key (WIF, xprv, tprv) in a descriptor; only public keys are accepted.
	ErrPrivateKey = errors.New("private key in descriptor")
	// ErrNetwork: an extended key whose version bytes belong to another network.
	ErrNetwork = errors.New("extended key for another network")
	// ErrHardenedDerivation: a hardened step (or hardened wildcard) after an
	// extended public key, which cannot be derived without the private key.
	ErrHardenedDerivation = errors.New("hardened derivation after an extended public key")
	// ErrNotRanged: a key expression without the final /* wildcard.
	ErrNotRanged = errors.New("key expression is not ranged")
	// ErrMultipath: a bad BIP-389 multipath step (empty, duplicate, too many, mismatched lengths).
	ErrMultipath = errors.New("invalid multipath step")
	// ErrThreshold: multisig threshold not an integer in 1..n.
	ErrThreshold = errors.New("invalid multisig threshold")
	// ErrTooManyKeys: more keys than the script context allows (20 for wsh multi, BIP-383).
	ErrTooManyKeys = errors.New("too many keys")
	// ErrDuplicateKey: the same extended public key appears in two key slots.
	ErrDuplicateKey = errors.New("duplicate key")

	// ErrBranch: Derive or PkScript asked for a branch the descriptor does not have.
	ErrBranch = errors.New("branch out of range")
	// ErrIndex: Derive or PkScript asked for a hardened (>= 2^31) index.
	ErrIndex = errors.New("index out of range")
)

// ParseError reports what is wrong with a descriptor and where.
// Col is the 1-based character column in the input string.
type ParseError struct {
	Col int
	Msg string
	Err error // one of the sentinels above
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("descriptor: column %d: %s", e.Col, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }

// errAt builds a *ParseError at the 0-based byte offset off.
func errAt(off int, sentinel error, format string, args ...any) error {
	return &ParseError{Col: off + 1, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}
