package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mdp/qrterminal/v3"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/store"
)

// command is one subcommand: its usage line, what it does (the text of `cosigner COMMAND
// --help`), whether it needs the COSIGNER_* configuration, and its function. args are the
// arguments after the command's name.
type command struct {
	name     string
	usage    string // "cosigner NAME …", the synopsis
	summary  string // one line for `cosigner --help`
	help     string // the rest of `cosigner NAME --help`
	noConfig bool   // runs without loading COSIGNER_* (policy, version)
	run      func(ctx context.Context, cfg *Config, args []string, out io.Writer) error
}

// commands lists every subcommand in the order `cosigner --help` prints them.
var commands = []command{
	{name: "init", usage: "cosigner init [--upgrade]", summary: "create the account key and Nostr identity (encrypted key file)",
		help: "Creates COSIGNER_KEY_FILE (default DATA_DIR/key.json): a BIP32 seed and a Nostr key, encrypted\nwith the passphrase (COSIGNER_PASSPHRASE_FILE), and prints the key origin, the xpub and the npub.\n--upgrade rewrites a version 1 key file in the current format, in place, same passphrase.",
		run: func(_ context.Context, cfg *Config, args []string, out io.Writer) error {
			switch {
			case len(args) == 1 && args[0] == "--upgrade":
				return cmdInitUpgrade(cfg, out)
			case len(args) != 0:
				return usageError{"usage: cosigner init [--upgrade]"}
			}
			return cmdInit(cfg, out)
		}},
	{name: "bunker-uri", usage: "cosigner bunker-uri [--perms P] [--qr]", summary: "print a bunker:// URI with a fresh single-use connect secret",
		help: "Stores a fresh connect secret (good for one client, once) and prints the bunker:// URI for\nNostr apps. --perms limits what the secret grants (method[:kind],…; default " + nip46.DefaultPerms + ").\n--qr also draws the URI as a QR code in the terminal, for phone apps.",
		run:  cmdBunkerURI},
	{name: "connect", usage: "cosigner connect 'nostrconnect://…'", summary: "accept an app's nostrconnect:// URI (the daemon answers it)", run: cmdConnect},
	{name: "clients", usage: "cosigner clients list|grant|revoke …", summary: "connected NIP-46 clients and their permissions", run: cmdClients},
	{name: "announce", usage: "cosigner announce [--nip05 NAME@DOMAIN] [--dry-run] | --nostr-json", summary: "publish the NIP-89 discovery event (kind 31990) or print the NIP-05 nostr.json for apps",
		help: announceHelp, run: cmdAnnounce},
	{name: "request", usage: "cosigner request BUNKER_URI METHOD [PARAMS…]", summary: "call a NIP-46 remote signer, print the result", run: cmdRequest},
	{name: "run", usage: "cosigner run", summary: "watch the wallet and serve NIP-46 until SIGTERM/SIGINT",
		help: "The daemon: syncs the wallet from the Electrum server, serves NIP-46 on COSIGNER_RELAYS, runs\nthe policy's automations, and serves /healthz, /status and /metrics on COSIGNER_HEALTH_ADDR.\nSIGTERM or SIGINT stops it gracefully.",
		run: func(ctx context.Context, cfg *Config, args []string, _ io.Writer) error {
			if len(args) != 0 {
				return usageError{fmt.Sprintf("run takes no arguments (got %q); settings are COSIGNER_* variables, see `cosigner config`", args)}
			}
			return cmdRun(ctx, cfg)
		}},
	{name: "status", usage: "cosigner status [--json]", summary: "the wallet as last seen (tip, balance, UTXOs), the daemon's sync progress and servers",
		help: "Reads the wallet view `cosigner run` stored (works while the daemon is stopped) and, when the\ndaemon's health endpoint answers, its Electrum server and relays. --json prints one JSON object\n(snake_case fields: wallet, daemon).",
		run:  cmdStatus},
	{name: "health", usage: "cosigner health", summary: "exit 0 if the running daemon is healthy (for HEALTHCHECK)",
		run: func(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
			if len(args) != 0 {
				return usageError{"usage: cosigner health"}
			}
			return cmdHealth(ctx, cfg, out)
		}},
	{name: "config", usage: "cosigner config [--json]", summary: "every COSIGNER_* setting: default, meaning, the value in effect (secrets masked)", run: cmdConfig},
	{name: "audit", usage: "cosigner audit [--since DURATION|TIME] [--limit N] [--json]", summary: "the audit log: every decision, with its client, rule and reason", run: cmdAudit},
	{name: "exposure", usage: "cosigner exposure list [--all] [--json] | invalidate TXID [--via AUTOMATION]",
		summary: "signed transactions the velocity windows count (spend exposure); end one that will never be used",
		help:    "list: each outstanding or confirmed signed transaction with its outflow, inputs, age and the\nwindows it counts in (--all also the invalidated ones). invalidate: the running daemon builds a\ntransaction spending one of that transaction's inputs back to the wallet, co-signed through the\nnormal path; the exposure ends when it confirms. See docs/spend-exposure.md.",
		run:     cmdExposure},
	{name: "export", usage: "cosigner export [--format descriptors|core|specter|electrum] [--label NAME]",
		summary: "the registered wallet in the forms coordinator wallets import (BDK, Core, Sparrow/Specter, Electrum)",
		help:    "descriptors: the receive and change descriptors with checksums (BDK, Sparrow, Core); core: a JSON\narray for Bitcoin Core's importdescriptors; specter: Specter's wallet JSON (Sparrow imports it);\nelectrum: an Electrum multisig wallet file, watch-only, keystores in SLIP-132 form (Zpub/Vpub for\nP2WSH, Ypub/Upub for P2SH-P2WSH; sortedmulti only, as Electrum sorts keys).",
		run:     cmdExport},
	{name: "policy", usage: "cosigner policy check FILE | test FILE --psbt P | schema", summary: "validate a policy file, dry-run a PSBT through it, print its JSON Schema", noConfig: true,
		run: func(ctx context.Context, _ *Config, args []string, out io.Writer) error {
			return cmdPolicy(ctx, args, out)
		}},
	{name: "psbt", usage: "cosigner psbt inspect [--json] FILE", summary: "what a PSBT does to the wallet: inputs, outputs, change, fee, warnings", run: cmdPSBT},
	{name: "proposals", usage: "cosigner proposals list|show ID|cancel ID [--json]", summary: "transactions the policy's automations proposed, and their progress", run: cmdProposals},
	{name: "notify-test", usage: "cosigner notify-test [--text T]", summary: "send a NIP-17 direct message to COSIGNER_NOTIFY_NPUB (check the setup)", run: cmdNotifyTest},
	{name: "version", usage: "cosigner version", summary: "the build: module version, VCS revision, Go version (also --version)", noConfig: true,
		run: func(_ context.Context, _ *Config, args []string, out io.Writer) error {
			if len(args) != 0 {
				return usageError{"usage: cosigner version"}
			}
			fmt.Fprintln(out, versionString())
			return nil
		}},
}

// usage is the text of `cosigner --help`.
func usage() string {
	var b strings.Builder
	b.WriteString("cosigner — a headless Bitcoin multisig co-signer on Nostr (NIP-46)\n\nusage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s\n      %s\n", c.usage, c.summary)
	}
	b.WriteString("\n`cosigner COMMAND --help` explains one command. Configuration is read from COSIGNER_*\nenvironment variables: `cosigner config` lists them.\n")
	return b.String()
}

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

// usageError is a command line the command cannot take; main exits 2 and prints the usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + "\n\nrun `cosigner --help` for the commands" }

// wantsHelp reports whether args ask for help: -h or --help anywhere before a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

func runCommand(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		if len(args) == 2 {
			return runCommand(ctx, []string{args[1], "--help"}, out)
		}
		fmt.Fprint(out, usage())
		return nil
	case "--version", "-version":
		fmt.Fprintln(out, versionString())
		return nil
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	if wantsHelp(args[1:]) {
		fmt.Fprintf(out, "usage: %s\n\n%s.\n", cmd.usage, cmd.summary)
		if cmd.help != "" {
			fmt.Fprintf(out, "\n%s\n", cmd.help)
		}
		return nil
	}
	var cfg *Config
	if !cmd.noConfig {
		var err error
		if cfg, err = loadConfig(); err != nil {
			return err
		}
	}
	return cmd.run(ctx, cfg, args[1:], out)
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
	pub, err := keystore.CreateKeyFile(cfg.KeyFile, pass, params)
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
	permsFlag := fs.String("perms", "", "permissions the secret grants (default "+nip46.DefaultPerms+")")
	qr := fs.Bool("qr", false, "also draw the URI as a QR code")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{"usage: cosigner bunker-uri [--perms method[:kind],…] [--qr]"}
	}
	var perms nip46.Perms
	if *permsFlag != "" {
		var err error
		if perms, err = nip46.ParsePerms(*permsFlag); err != nil {
			return fmt.Errorf("bunker-uri: --perms: %w", err)
		}
	}
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list the relays clients should use")
	}
	pub, _, err := keystore.ReadPublic(cfg.KeyFile)
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
	uri := nip46.BunkerURI(pub.NostrPubKey, cfg.Relays, secret)
	if *qr {
		// Half blocks keep the code small enough for a terminal; a quiet zone of 2 modules is
		// what phone cameras need around it. Level L: the URI is long and is shown on a screen.
		qrterminal.GenerateWithConfig(uri, qrterminal.Config{Level: qrterminal.L, Writer: out, HalfBlocks: true,
			BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK, WhiteChar: qrterminal.WHITE_WHITE,
			BlackWhiteChar: qrterminal.BLACK_WHITE, QuietZone: 2})
	}
	fmt.Fprintln(out, uri)
	return nil
}

func cmdStatus(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{"usage: cosigner status [--json]"}
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := chainwatch.ReadStatus(ctx, db)
	if err != nil {
		return err
	}
	if *asJSON {
		sj := statusJSON{Wallet: daemon.NewWalletJSON(st)}
		if cfg.HealthAddr != "" {
			if h, err := fetchHealth(ctx, cfg.HealthAddr); err == nil {
				sj.Daemon = &h
			}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(sj)
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
