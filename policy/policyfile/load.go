package policyfile

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/custodyagents/cosigner/policy"
)

// MaxFileBytes bounds a policy file.
const MaxFileBytes = 1 << 20

// ReadFile reads a policy file's bytes, refusing files over MaxFileBytes (ErrTooLarge).
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileBytes+1)); err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if buf.Len() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, path, MaxFileBytes)
	}
	return buf.Bytes(), nil
}

// Load reads and validates the policy file at path (policy.Parse under the file's path as its
// name). Errors: a policy.Errors value (line:col) for a bad policy, ErrTooLarge, or an I/O
// error.
func Load(path string, opts ...policy.Option) (*policy.Policy, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return policy.Parse(path, data, opts...)
}
