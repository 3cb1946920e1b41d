package policyfile

import "errors"

// ErrTooLarge is returned by ReadFile and Load for a file larger than MaxFileBytes.
var ErrTooLarge = errors.New("policy: file too large")
