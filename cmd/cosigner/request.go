package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/signer"
)

const requestUsage = `usage: cosigner request [--timeout D] [--perms P] BUNKER_URI METHOD [PARAMS…]
Calls METHOD on the NIP-46 remote signer of BUNKER_URI and prints the result. The client key is
DATA_DIR/client.ncryptsec (NIP-49, the key file passphrase), created on first use; the remote
signer grants it permissions at the first connect with the URI's secret.`

// cmdRequest is a NIP-46 client call from the command line (signer.Client).
func cmdRequest(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("request", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 30*time.Second, "wait at most this long for a response (auth_url: 15m)")
	perms := fs.String("perms", "", "permissions to ask for in connect")
	if err := fs.Parse(args); err != nil || fs.NArg() < 2 {
		return usageError{requestUsage}
	}
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	sk, err := requestClientKey(filepath.Join(cfg.DataDir, "client.ncryptsec"), pass)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	log := cfg.logger()
	c, err := signer.DialBunker(ctx, sk, fs.Arg(0), signer.ClientOptions{
		Timeout: *timeout, Perms: *perms, Logger: log, Metadata: nip46.ClientMetadata{Name: "cosigner request"},
		OnAuthURL: func(method, id, url string) {
			fmt.Fprintf(os.Stderr, "the remote signer holds this request; open %s (waiting for the answer)\n", url)
		},
	})
	if err != nil {
		return fmt.Errorf("request: connect: %w", err)
	}
	defer c.Close()
	res, err := c.Call(ctx, fs.Arg(1), fs.Args()[2:]...)
	if err != nil {
		return fmt.Errorf("request: %s: %w", fs.Arg(1), err)
	}
	fmt.Fprintln(out, res)
	return nil
}

// requestClientKey loads the client key (NIP-49 ncryptsec, mode 0600) or creates it.
func requestClientKey(path, pass string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		sk := nostr.GeneratePrivateKey()
		enc, err := keystore.EncryptNcryptsec(sk, pass)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("client key: %w", err)
		}
		if _, err := f.WriteString(enc + "\n"); err != nil {
			f.Close()
			return "", fmt.Errorf("client key: %w", err)
		}
		return sk, f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("client key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("client key %s: %w (mode %04o; chmod 600)", path, keystore.ErrKeyFileMode, st.Mode().Perm())
	}
	sk, err := keystore.DecryptNcryptsec(strings.TrimSpace(string(b)), pass)
	if err != nil {
		return "", fmt.Errorf("client key %s: %w", path, err)
	}
	return sk, nil
}
