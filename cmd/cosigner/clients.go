package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/store"
)

const clientsUsage = `usage:
  cosigner clients list                    connected NIP-46 clients and their permissions
  cosigner clients grant CLIENT PERMS      add permissions, e.g. sign_event:1,nip44_encrypt
  cosigner clients revoke CLIENT [PERMS]   remove permissions, or the whole session
CLIENT is the client's pubkey (hex or npub). Changes apply to the client's next request.`

// cmdClients manages client sessions in the database the daemon reads on every request.
func cmdClients(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{clientsUsage}
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	switch {
	case args[0] == "list" && len(args) == 1:
		return clientsList(ctx, db, out)
	case args[0] == "grant" && len(args) == 3:
		return clientsChange(ctx, db, args[1], args[2], true, out)
	case args[0] == "revoke" && len(args) == 3:
		return clientsChange(ctx, db, args[1], args[2], false, out)
	case args[0] == "revoke" && len(args) == 2:
		pk, err := clientPubKey(args[1])
		if err != nil {
			return err
		}
		if _, ok, err := db.SessionPerms(ctx, pk); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("clients: %s has no session", pk)
		}
		if err := db.EndSession(ctx, pk); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: session ended; it needs a new bunker:// secret to connect again\n", pk)
		return nil
	}
	return usageError{clientsUsage}
}

func clientsList(ctx context.Context, db *store.DB, out io.Writer) error {
	ss, err := db.ListSessions(ctx)
	if err != nil {
		return err
	}
	if len(ss) == 0 {
		fmt.Fprintln(out, "no connected clients")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	var notes []string
	fmt.Fprintln(w, "CLIENT\tNAME*\tURL*\tPERMISSIONS\tREQUESTED\tRELAYS\tCONNECTED\tLAST SEEN\tREQUESTS")
	for _, s := range ss {
		relays := "(ours)"
		if len(s.Relays) > 0 {
			relays = strings.Join(s.Relays, " ")
			// The nostrconnect connect response's state: pending, sent, confirmed, unconfirmed, …
			if st, _, err := db.NostrConnectState(ctx, s.Client); err == nil {
				relays += " [" + st + "]"
			} else if !errors.Is(err, session.ErrNoSession) {
				return err
			}
		}
		perms := s.Perms
		if perms == "" {
			perms = "(session methods only)"
		}
		info := clientHints(s)
		if info.Note != "" {
			notes = append(notes, fmt.Sprintf("%s…: %s", s.Client[:16], printable(info.Note, 200)))
		}
		seen := "-"
		if !s.LastSeen.IsZero() {
			seen = s.LastSeen.UTC().Format("2006-01-02 15:04Z")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Client, printable(info.Name, 40), printable(info.URL, 40), perms,
			printable(s.RequestedPerms, 40), relays, s.ConnectedAt.UTC().Format("2006-01-02 15:04Z"), seen, s.Requests)
	}
	fmt.Fprintln(w, "* name and url are what the client says about itself (NIP-46 client metadata): display hints, never proof of identity, never used to authorize")
	if err := w.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(out, "client metadata dropped:")
		for _, n := range notes {
			fmt.Fprintln(out, "  "+n)
		}
	}
	return nil
}

// clientHints returns what the client says about itself (NIP-46 client metadata: connect's
// fourth param or the nostrconnect:// name=/url=/image=), as validated when it connected. A
// session made before migration 0017 has only the metadata JSON as the client sent it: it is
// read through the same validation (nip46.ParseClientMetadata).
func clientHints(s session.ClientSession) session.ClientInfo {
	info := s.Info
	if info.URL == "" && info.Image == "" && info.Note == "" && s.Metadata != "" {
		m, err := nip46.ParseClientMetadata(s.Metadata)
		if info.Name == "" {
			info.Name = m.Name
		}
		info.URL, info.Image = m.URL, m.Image
		if err != nil {
			info.Note = err.Error()
		}
	}
	if n, err := (nip46.ClientMetadata{Name: info.Name}).Validate(); err != nil {
		info.Name = n.Name // a name= kept before migration 0017, not validated then
	}
	return info
}

// printable keeps client-chosen text from moving the terminal around.
func printable(s string, n int) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, signerTruncate(s, n))
}

func signerTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func clientsChange(ctx context.Context, db *store.DB, client, permsArg string, grant bool, out io.Writer) error {
	pk, err := clientPubKey(client)
	if err != nil {
		return err
	}
	change, err := nip46.ParsePerms(permsArg)
	if err != nil {
		return fmt.Errorf("clients: %w", err)
	}
	cur, ok, err := db.SessionPerms(ctx, pk)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("clients: %s has no session (it connects with a bunker:// URI from `cosigner bunker-uri --perms …`)", pk)
	}
	have, err := nip46.ParsePerms(cur)
	if err != nil {
		return fmt.Errorf("clients: stored permissions of %s: %w", pk, err)
	}
	var next nip46.Perms
	if grant {
		next = have.Union(change)
	} else if next, err = have.Without(change); err != nil {
		return fmt.Errorf("clients: %w", err)
	}
	if err := db.SetSessionPerms(ctx, pk, next.String()); err != nil {
		if errors.Is(err, session.ErrNoSession) {
			return fmt.Errorf("clients: %s has no session", pk)
		}
		return err
	}
	fmt.Fprintf(out, "%s: %s\n", pk, orDash(next.String()))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "(session methods only)"
	}
	return s
}

// clientPubKey accepts a hex pubkey or an npub.
func clientPubKey(s string) (string, error) {
	if strings.HasPrefix(s, "npub1") {
		_, v, err := nip19.Decode(s)
		if err != nil {
			return "", fmt.Errorf("clients: %q is not a valid npub", s)
		}
		if pk, ok := v.(string); ok {
			return pk, nil
		}
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("clients: %q is not a pubkey (64 hex characters or npub1…)", signerTruncate(s, 80))
}
