package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

const connectUsage = `usage: cosigner connect [--perms PERMS] [--wait DURATION] 'nostrconnect://…'
Accepts an app's nostrconnect:// URI: the app gets PERMS (default ` + nip46.DefaultPerms + `)
intersected with what its URI asks for. The running daemon sends the connect response on the
app's relays; this command waits for it (--wait, default 30s).`

// cmdConnect queues a nostrconnect:// response for the daemon (NIP-46, client-initiated
// connection): it writes the session and the pending response in the database, which the running
// daemon polls every second.
func cmdConnect(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	perms := fs.String("perms", nip46.DefaultPerms, "permissions to grant")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the daemon to send the response")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usageError{connectUsage}
	}
	u, err := nip46.ParseNostrConnectURI(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	base, err := nip46.ParsePerms(*perms)
	if err != nil {
		return fmt.Errorf("connect: --perms: %w", err)
	}
	nc, err := signer.AcceptNostrConnect(u, base.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.AddNostrConnect(ctx, nc); err != nil {
		return err
	}
	fmt.Fprintf(out, "client %s (%s, as it names itself: unverified) accepted with permissions: %s\n", u.ClientPubKey, printable(nc.Name, 40), orDash(nc.Perms))
	if nc.Info.Note != "" {
		fmt.Fprintf(out, "note: %s\n", printable(nc.Info.Note, 200))
	}
	deadline := time.Now().Add(*wait)
	for {
		state, msg, err := db.NostrConnectState(ctx, u.ClientPubKey)
		if err != nil {
			return err
		}
		switch state {
		case session.ConnectConfirmed:
			fmt.Fprintln(out, "the app received the connect response and sent its first request; it is connected")
			return nil
		case session.ConnectSent:
			fmt.Fprintf(out, "the daemon sent the connect response; the app is connected once it reads it (re-sent until the app's first request, for up to %s; `cosigner clients list` shows when it was last seen)\n", signer.NostrConnectResendFor)
			return nil
		case session.ConnectFailed, session.ConnectExpired, session.ConnectUnconfirmed:
			return fmt.Errorf("connect: the daemon could not answer the app: %s", msg)
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "queued: the daemon (`cosigner run`) sends the response when it runs (within %s of now)\n", signer.NostrConnectTTL)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
