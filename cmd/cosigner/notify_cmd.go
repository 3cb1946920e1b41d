package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/relaypool"
)

const notifyTestUsage = `usage: cosigner notify-test [--text T] [--timeout D]
Sends a NIP-17 direct message from this co-signer's Nostr identity to the operators of
COSIGNER_NOTIFY_NPUB (and a copy to itself) over COSIGNER_RELAYS and each operator's kind 10050
DM relays, waits for the relays' answers, and prints them. Exit status 1 when some operator's
message was accepted by no relay.`

// cmdNotifyTest sends a test direct message (package notify) so that an operator can check the
// setup: the npub, the relays, and that their Nostr client shows NIP-17 messages.
func cmdNotifyTest(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("notify-test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	text := fs.String("text", "", "the message (default: a test message naming this co-signer)")
	timeout := fs.Duration("timeout", time.Minute, "wait at most this long for the relays")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *timeout <= 0 {
		return usageError{notifyTestUsage}
	}
	if len(cfg.NotifyRecipients) == 0 {
		return errors.New("configuration: COSIGNER_NOTIFY_NPUB is empty: set the operators' npubs (comma-separated) to receive direct messages")
	}
	if len(cfg.Relays) == 0 {
		return errors.New("configuration: COSIGNER_RELAYS is empty: list the relays to publish on")
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
	log := cfg.logger()
	// A check waits for every relay's first answer (a quorum over the number of relays means
	// all), so that the operator sees each one, the DM relays of their kind 10050 list included.
	pool, err := relaypool.New(cfg.Relays, relaypool.Options{Logger: log, Quorum: math.MaxInt, AuthSigner: daemon.NostrAuthSigner(keys.NostrSecretKey())})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_RELAYS: %w", err)
	}
	defer pool.Close()
	dm, err := notify.New(keys.NostrSecretKey(), cfg.NotifyRecipients, pool, log)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_NOTIFY_NPUB: %w", err)
	}
	defer dm.Close()
	if *text == "" {
		*text = fmt.Sprintf("cosigner notify-test: this is %s. Notifications about automations (held, denied, stuck, broadcast, confirmed, abandoned) will arrive here. Sent %s.",
			keys.Public.NPub(), time.Now().UTC().Format(time.RFC3339))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, sendErr := dm.SendWait(ctx, *text)
	if res == nil && sendErr != nil {
		return fmt.Errorf("notify-test: %w", sendErr)
	}
	fmt.Fprintf(out, "NIP-17 direct message from %s:\n", keys.Public.NPub())
	for _, d := range res {
		who, _ := nip19.EncodePublicKey(d.Recipient)
		if d.Self {
			who += " (this co-signer's own copy)"
		}
		status := "delivered"
		if d.Err != nil {
			status = "NOT delivered"
		}
		fmt.Fprintf(out, "  to %s: %s (gift wrap %s, %d attempt(s))\n", who, status, d.WrapID, d.Attempts)
		for _, r := range d.Relays {
			note := ""
			if !slices.Contains(pool.URLs(), r.Relay) {
				note = " (the operator's DM relay, kind 10050)"
			}
			fmt.Fprintf(out, "    %s%s: %s\n", r.Relay, note, relayAnswer(r))
		}
	}
	if sendErr != nil {
		return fmt.Errorf("notify-test: %w", sendErr)
	}
	return nil
}

// relayAnswer is one relay's answer for people: ok, still trying, or the error.
func relayAnswer(r relaypool.PublishResult) string {
	switch {
	case r.Err == nil:
		return "ok"
	case errors.Is(r.Err, relaypool.ErrPending):
		return "no answer yet (still publishing in the background)"
	}
	return strings.TrimPrefix(r.Err.Error(), "relaypool: ")
}
