// Command gonostrclient is one NIP-46 session with go-nostr v0.38.2's nip46.BunkerClient, for
// the interop tests in e2e/nip46. It runs as its own process, built without -race, because
// go-nostr v0.38.2's Relay has a data race when a connection closes (relay.go:172 against
// :516) that would fail the race-enabled test binary for a bug that is not cosigner's.
//
// BunkerClient speaks the NIP-04 transport of the older NIP-46: the remote signer must accept
// it (cosigner: COSIGNER_NIP04_LEGACY=true).
//
//	gonostrclient --bunker 'bunker://…' --sk HEX [--peer HEX] [--psbt-file F] [--timeout S] STEP…
//
// STEPs, in order: get_public_key, sign_event, nip44 (encrypt to --peer, then decrypt),
// sign_psbt (through BunkerClient.RPC). connect is sent first by nip46.ConnectBunker with the
// URI's secret.
//
// Output: one JSON line per step on stdout, {"step","result"} or {"step","error"} (nip44 adds
// "text", "ciphertext", "plaintext"; sign_event adds "verified"), then {"done":true}. Exit
// status 0 when every step ran, 1 when connect failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip46"
)

func out(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func main() {
	bunkerURI := flag.String("bunker", "", "bunker:// URI")
	sk := flag.String("sk", "", "client secret key, hex")
	peer := flag.String("peer", "", "third-party pubkey for the nip44 step, hex")
	psbtFile := flag.String("psbt-file", "", "file holding the PSBT for sign_psbt")
	timeout := flag.Duration("timeout", 60*time.Second, "whole session")
	flag.Parse()
	if *bunkerURI == "" || !nostr.IsValid32ByteHex(*sk) {
		fmt.Fprintln(os.Stderr, "usage: gonostrclient --bunker URI --sk HEX [--peer HEX] [--psbt-file F] STEP…")
		os.Exit(2)
	}
	nostr.InfoLogger.SetOutput(io.Discard) // it logs every event a relay sends outside the filter

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	bunker, err := nip46.ConnectBunker(ctx, *sk, *bunkerURI, nil, func(string) {})
	if err != nil {
		fmt.Fprintf(os.Stderr, "connect: %v\n", err)
		os.Exit(1)
	}
	out(map[string]any{"step": "connect", "result": "ack"})
	answer := func(step, result string, err error, extra map[string]any) {
		m := map[string]any{"step": step}
		if err != nil {
			m["error"] = strings.TrimPrefix(err.Error(), "response error: ")
		} else {
			m["result"] = result
		}
		for k, v := range extra {
			m[k] = v
		}
		out(m)
	}
	for _, step := range flag.Args() {
		switch step {
		case "get_public_key":
			pk, err := bunker.GetPublicKey(ctx)
			answer(step, pk, err, nil)
		case "sign_event":
			ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Tags: nostr.Tags{}, Content: "signed by cosigner through go-nostr"}
			err := bunker.SignEvent(ctx, &ev)
			ok, _ := ev.CheckSignature()
			b, _ := json.Marshal(ev)
			answer(step, string(b), err, map[string]any{"verified": ok})
		case "nip44":
			text := "nip44 round trip through go-nostr " + nostr.GeneratePrivateKey()[:16]
			ct, err := bunker.NIP44Encrypt(ctx, *peer, text)
			if err != nil {
				answer(step, "", err, nil)
				continue
			}
			pt, err := bunker.NIP44Decrypt(ctx, *peer, ct)
			res := "mismatch"
			if pt == text {
				res = "ok"
			}
			answer(step, res, err, map[string]any{"text": text, "ciphertext": ct, "plaintext": pt})
		case "sign_psbt":
			b, err := os.ReadFile(*psbtFile)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			res, err := bunker.RPC(ctx, "sign_psbt", []string{strings.TrimSpace(string(b))})
			answer(step, res, err, nil)
		default:
			fmt.Fprintf(os.Stderr, "unknown step %q\n", step)
			os.Exit(2)
		}
	}
	out(map[string]any{"done": true})
}
