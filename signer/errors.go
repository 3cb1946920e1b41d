package signer

import "errors"

var (
	// ErrTimeout means a NIP-46 request got no response in time (Client.Call).
	ErrTimeout = errors.New("signer: no response from the remote signer in time")
	// ErrClientClosed means the Client was closed.
	ErrClientClosed = errors.New("signer: client closed")
	// ErrBadRequestID means a caller-given NIP-46 request id is empty, longer than 128
	// characters (the remote signer refuses those), or already waited on by another call.
	ErrBadRequestID = errors.New("signer: bad request id")
)
