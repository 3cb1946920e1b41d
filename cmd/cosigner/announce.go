package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
)

const announceUsage = `usage: cosigner announce [--name N] [--about T] [--picture URL] [--website URL]
                         [--nip05 NAME@DOMAIN] [--nostrconnect-url URL] [--dry-run] [--timeout D]
       cosigner announce --nostr-json [--nip05 NAME@DOMAIN] [--nostrconnect-url URL]
` + announceHelp

const announceHelp = `Publishes this remote signer's NIP-89 handler event (kind 31990, k 24133, a relay tag per
COSIGNER_RELAYS; NIP-46 "Remote signer discovery") on COSIGNER_RELAYS, signed with its Nostr
key; a new announcement replaces the previous one. --dry-run prints the signed event instead.
--nostr-json prints the NIP-05 document to serve at https://DOMAIN/.well-known/nostr.json
(names and nip46 relays) so that apps find the bunker's relays from NAME@DOMAIN.`

// cmdAnnounce publishes the NIP-89 announcement (signer.Announce) or prints the NIP-05 document
// (nip46.NostrJSON) for discovery (NIP-46 appendix).
func cmdAnnounce(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("announce", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var a nip46.Announcement
	fs.StringVar(&a.Name, "name", "cosigner", "the name apps show")
	fs.StringVar(&a.About, "about", "Bitcoin multisig co-signer: NIP-46 remote signer with sign_psbt under a spending policy", "a description")
	fs.StringVar(&a.Picture, "picture", "", "an http(s) image URL")
	fs.StringVar(&a.Website, "website", "", "an http(s) URL")
	fs.StringVar(&a.NIP05, "nip05", "", "NAME@DOMAIN whose nostr.json lists this bunker")
	fs.StringVar(&a.NostrConnectURL, "nostrconnect-url", "", "https URL template holding <nostrconnect>")
	dry := fs.Bool("dry-run", false, "print the signed event, do not publish")
	nostrJSON := fs.Bool("nostr-json", false, "print the NIP-05 nostr.json document")
	timeout := fs.Duration("timeout", 30*time.Second, "wait at most this long for the relays")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *timeout <= 0 {
		return usageError{announceUsage}
	}
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list the relays clients should use")
	}
	a.Relays = cfg.Relays
	if *nostrJSON {
		pub, _, err := keystore.ReadPublic(cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("announce: %w (run `cosigner init` first)", err)
		}
		name := "_"
		if a.NIP05 != "" {
			var err error
			if name, _, err = nip46.SplitNIP05(a.NIP05); err != nil {
				return fmt.Errorf("announce: --nip05: %w", err)
			}
		}
		doc, err := nip46.NostrJSON(pub.NostrPubKey, name, a.Relays, a.NostrConnectURL)
		if err != nil {
			return fmt.Errorf("announce: %w", err)
		}
		fmt.Fprintln(out, string(doc))
		return nil
	}
	if err := a.Validate(); err != nil {
		return err
	}
	params, _ := cfg.Params()
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	keys, err := keystore.LoadKeyFile(cfg.KeyFile, pass, params)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_KEY_FILE: %w", err)
	}
	if *dry {
		ev, _, err := signer.Announce(ctx, keys.NostrSecretKey(), dryPool{}, a, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(out, ev.String())
		return nil
	}
	pool, err := relaypool.New(cfg.Relays, relaypool.Options{Logger: cfg.logger(), Quorum: math.MaxInt, AuthSigner: daemon.NostrAuthSigner(keys.NostrSecretKey())})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_RELAYS: %w", err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ev, res, err := signer.Announce(ctx, keys.NostrSecretKey(), pool, a, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "NIP-89 announcement %s (kind %d, d=%s) by %s:\n", ev.ID, ev.Kind, nip46.AnnouncementDTag, keys.Public.NPub())
	accepted := 0
	for _, r := range res {
		if r.Err == nil {
			accepted++
		}
		fmt.Fprintf(out, "  %s: %s\n", r.Relay, relayAnswer(r))
	}
	if accepted == 0 {
		return errors.New("announce: no relay accepted the announcement")
	}
	return nil
}

// dryPool publishes nothing (announce --dry-run).
type dryPool struct{}

func (dryPool) Subscribe(context.Context, nostr.Filter) <-chan relaypool.Event { return nil }
func (dryPool) Publish(context.Context, nostr.Event) []relaypool.PublishResult { return nil }
func (dryPool) URLs() []string                                                 { return nil }
