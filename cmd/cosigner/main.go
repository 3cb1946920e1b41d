package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

const usage = `cosigner — a headless Bitcoin multisig co-signer on Nostr (NIP-46)

usage:
  cosigner init [--upgrade]   create the account key and Nostr identity (encrypted key file);
                              --upgrade rewrites a version 1 key file in the current format
  cosigner bunker-uri [--perms P]  print a bunker:// URI with a fresh single-use connect secret
  cosigner connect 'nostrconnect://…'  accept an app's nostrconnect:// URI (daemon answers it)
  cosigner clients list|grant|revoke   connected NIP-46 clients and their permissions
  cosigner request BUNKER_URI METHOD [PARAMS…]  call a NIP-46 remote signer, print the result
  cosigner run                watch the wallet and serve NIP-46 until SIGTERM/SIGINT
  cosigner status             the wallet as last seen (tip, balance, UTXOs) and the daemon's sync progress and servers
  cosigner health             exit 0 if the running daemon is healthy (for HEALTHCHECK)
  cosigner policy check FILE  validate a policy file
  cosigner policy test FILE --psbt P   dry run: how the policy decides the PSBT, rule by rule
  cosigner policy schema      print the policy language's JSON Schema
  cosigner psbt inspect [--json] FILE
                              what a PSBT does to the wallet: inputs, outputs, change, fee, warnings
  cosigner proposals list|show ID|cancel ID [--json]
                              transactions the policy's automations proposed, and their progress
  cosigner notify-test [--text T]  send a NIP-17 direct message to COSIGNER_NOTIFY_NPUB (check the setup)

Configuration is read from COSIGNER_* environment variables; see the README.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runCommand(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cosigner:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + "\n\n" + usage }

func runCommand(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	case "policy":
		return cmdPolicy(ctx, args[1:], out)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	switch args[0] {
	case "init":
		if len(args) == 2 && args[1] == "--upgrade" {
			return cmdInitUpgrade(cfg, out)
		}
		if len(args) != 1 {
			return usageError{"usage: cosigner init [--upgrade]"}
		}
		return cmdInit(cfg, out)
	case "bunker-uri":
		return cmdBunkerURI(ctx, cfg, args[1:], out)
	case "connect":
		return cmdConnect(ctx, cfg, args[1:], out)
	case "clients":
		return cmdClients(ctx, cfg, args[1:], out)
	case "request":
		return cmdRequest(ctx, cfg, args[1:], out)
	case "run":
		return cmdRun(ctx, cfg)
	case "status":
		return cmdStatus(ctx, cfg, out)
	case "health":
		return cmdHealth(ctx, cfg, out)
	case "psbt":
		return cmdPSBT(ctx, cfg, args[1:], out)
	case "proposals":
		return cmdProposals(ctx, cfg, args[1:], out)
	case "notify-test":
		return cmdNotifyTest(ctx, cfg, args[1:], out)
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func cmdInit(cfg *Config, out io.Writer) error {
	params, _ := cfg.Params()
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("init: %w", dataDirHint(err, cfg.DataDir))
	}
	pub, err := signer.CreateKeyFile(cfg.KeyFile, pass, params)
	if err != nil {
		return fmt.Errorf("init: %w", dataDirHint(err, cfg.DataDir))
	}
	fmt.Fprintf(out, "Created %s (encrypted; keep the passphrase safe, it is not stored).\n\n", cfg.KeyFile)
	fmt.Fprintf(out, "key origin and xpub (give this to your wallet coordinator):\n  %s\n", pub.KeyOrigin())
	fmt.Fprintf(out, "Nostr identity of this co-signer (remote signer pubkey):\n  %s\n  %s\n", pub.NPub(), pub.NostrPubKey)
	fmt.Fprintf(out, "\nNext: register the wallet descriptor in COSIGNER_DESCRIPTOR, write %s, then `cosigner bunker-uri` and `cosigner run`.\n", cfg.PolicyFile)
	return nil
}

// dataDirHint adds to a permission error who must own the data directory: the uid running
// cosigner (10001 in the container image, so a bind-mounted host directory must belong to it).
func dataDirHint(err error, dir string) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fmt.Errorf("%w (the data directory %s must be writable by uid %d, which runs cosigner; "+
		"for a bind-mounted /data of the container image: chown -R 10001:10001 the host directory)", err, dir, os.Getuid())
}

func cmdBunkerURI(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bunker-uri", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	permsFlag := fs.String("perms", "", "permissions the secret grants (default "+signer.DefaultPerms+")")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{"usage: cosigner bunker-uri [--perms method[:kind],…]"}
	}
	var perms signer.Perms
	if *permsFlag != "" {
		var err error
		if perms, err = signer.ParsePerms(*permsFlag); err != nil {
			return fmt.Errorf("bunker-uri: --perms: %w", err)
		}
	}
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list the relays clients should use")
	}
	pub, _, err := signer.ReadPublic(cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("bunker-uri: %w (run `cosigner init` first)", err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	secret := hex.EncodeToString(b)
	if *permsFlag != "" {
		err = db.AddConnectSecretPerms(ctx, secret, perms.String())
	} else {
		err = db.AddConnectSecret(ctx, secret)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, signer.BunkerURI(pub.NostrPubKey, cfg.Relays, secret))
	return nil
}

func cmdStatus(ctx context.Context, cfg *Config, out io.Writer) error {
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := chainwatch.ReadStatus(ctx, db)
	if err != nil {
		return err
	}
	return showStatus(ctx, cfg, out, st)
}

func cmdHealth(ctx context.Context, cfg *Config, out io.Writer) error {
	if cfg.HealthAddr == "" {
		return errors.New("health: COSIGNER_HEALTH_ADDR is empty, the daemon serves no health endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HealthAddr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	out.Write(body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: not healthy (HTTP %d)", resp.StatusCode)
	}
	return nil
}
