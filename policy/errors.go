package policy

import "errors"

var (
	// ErrNoNetwork means a named descriptor or address fits none of the known networks.
	ErrNoNetwork = errors.New("policy: fits no known network")
	// ErrWrongNetwork means a destination (an address or a named descriptor's keys) belongs to
	// another network than the wallet's (Destination.ForNetwork).
	ErrWrongNetwork = errors.New("policy: destination of another network")
)
