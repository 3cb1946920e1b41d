package nip46e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/store"
)

// buildPSBT has BDK build a payment from the wallet (signed by key B) and returns it, base64.
func buildPSBT(ctx context.Context, t *testing.T, env *scenario.Env, amountSat int64) scenario.Built {
	t.Helper()
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	built, err := env.BuildPayment(ctx, payee, btcutil.Amount(amountSat), 5)
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// checkCosigned decodes the signed PSBT (base64) and checks that every input now carries two
// partial signatures (BDK's key B and the cosigner's key A) and that the unsigned transaction
// is the one that was sent.
func checkCosigned(t *testing.T, sent, got string) {
	t.Helper()
	in := decodePSBT(t, sent)
	out := decodePSBT(t, got)
	if out.UnsignedTx.TxHash() != in.UnsignedTx.TxHash() {
		t.Fatalf("signed PSBT is for tx %s, sent %s", out.UnsignedTx.TxHash(), in.UnsignedTx.TxHash())
	}
	for i, inp := range out.Inputs {
		if len(inp.PartialSigs) != 2 {
			t.Fatalf("input %d has %d partial signatures, want 2 (B's and the cosigner's)", i, len(inp.PartialSigs))
		}
	}
}

func decodePSBT(t *testing.T, b64 string) *psbt.Packet {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("PSBT is not base64: %v", err)
	}
	p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
	if err != nil {
		t.Fatalf("not a PSBT: %v", err)
	}
	return p
}

// checkSignedEvent checks a sign_event result: a valid event by the cosigner's Nostr key with
// the content the client asked for.
func checkSignedEvent(t *testing.T, env *scenario.Env, r stepResult, wantContent string) {
	t.Helper()
	var ev nostr.Event
	if err := json.Unmarshal([]byte(r.Result), &ev); err != nil {
		t.Fatalf("sign_event result is not an event: %v: %q", err, r.Result)
	}
	if ok, err := ev.CheckSignature(); !ok || err != nil {
		t.Fatalf("sign_event returned an event whose signature does not verify (%v): %s", err, r.Result)
	}
	if ev.GetID() != ev.ID {
		t.Fatalf("sign_event returned an event with a wrong id: %s", r.Result)
	}
	if ev.PubKey != env.KeyA.NostrPubKey || ev.Kind != 1 || ev.Content != wantContent {
		t.Fatalf("sign_event returned %s; want kind 1 by %s with content %q", r.Result, env.KeyA.NostrPubKey, wantContent)
	}
}

// checkNIP44 checks the nip44 step: the round trip gave the text back, and the ciphertext is
// real NIP-44 v2 from the cosigner's key to the peer (the peer can decrypt it on its own).
func checkNIP44(t *testing.T, env *scenario.Env, r stepResult, peerSK string) {
	t.Helper()
	if r.Result != "ok" || r.Plaintext != r.Text {
		t.Fatalf("nip44 round trip: %+v", r)
	}
	ck, err := nip44.GenerateConversationKey(env.KeyA.NostrPubKey, peerSK)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := nip44.Decrypt(r.Ciphertext, ck)
	if err != nil || plain != r.Text {
		t.Fatalf("the peer cannot decrypt the cosigner's nip44_encrypt ciphertext: %q, %v", plain, err)
	}
}

// TestInteropNostrTools drives cosigner with nostr-tools' BunkerSigner (2.25.2) in both
// NIP-46 flows: fromBunker with a bunker:// URI, and fromURI with a nostrconnect:// URI that
// `cosigner connect` accepts. Each session: connect, get_public_key, sign_event, a nip44 round
// trip, sign_psbt of a real 2-of-3 P2WSH PSBT, switch_relays. The permissions for sign_event
// and nip44_* come from the connect secret (bunker) or `cosigner connect --perms` (nostrconnect),
// intersected with what the client asks for.
func TestInteropNostrTools(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	peerSK := nostr.GeneratePrivateKey()
	peerPK, _ := nostr.GetPublicKey(peerSK)
	script := filepath.Join("e2e", "clients", "nip46_session.mjs")

	check := func(t *testing.T, got map[string]stepResult, built scenario.Built) {
		t.Run("connect", func(t *testing.T) {
			if r := mustStep(t, got, "connect"); r.Result != "ack" {
				t.Fatalf("connect: %+v", r)
			}
		})
		t.Run("ping", func(t *testing.T) {
			if r := mustStep(t, got, "ping"); r.Result != "pong" {
				t.Fatalf("ping: %+v", r)
			}
		})
		t.Run("get_public_key", func(t *testing.T) {
			if r := mustStep(t, got, "get_public_key"); r.Result != env.KeyA.NostrPubKey {
				t.Fatalf("get_public_key: %+v, want %s", r, env.KeyA.NostrPubKey)
			}
		})
		t.Run("sign_event", func(t *testing.T) {
			r := mustStep(t, got, "sign_event")
			noError(t, r)
			checkSignedEvent(t, env, r, "signed by cosigner through nostr-tools")
		})
		t.Run("nip44", func(t *testing.T) {
			r := mustStep(t, got, "nip44")
			noError(t, r)
			checkNIP44(t, env, r, peerSK)
		})
		t.Run("sign_psbt", func(t *testing.T) {
			r := mustStep(t, got, "sign_psbt")
			if r.Error != "" {
				t.Fatalf("sign_psbt refused: %s", r.Error)
			}
			checkCosigned(t, built.PSBT, r.Result)
		})
		t.Run("sign_psbt_hex as Amber and Amethyst send it", func(t *testing.T) {
			// {"method":"sign_psbt","params":["<PSBT hex>"]} (nips PR #2332, NIP-BC): answered in hex,
			// with the co-signer's partial signatures on the multisig inputs (found by its BIP32
			// fingerprint), not finalized.
			r := mustStep(t, got, "sign_psbt_hex")
			noError(t, r)
			raw, err := hex.DecodeString(r.Result)
			if err != nil || !strings.HasPrefix(r.Result, "70736274ff") {
				t.Fatalf("sign_psbt with a hex PSBT was not answered in hex: %.80q (%v)", r.Result, err)
			}
			checkCosigned(t, built.PSBT, base64.StdEncoding.EncodeToString(raw))
		})
		t.Run("switch_relays", func(t *testing.T) {
			r := mustStep(t, got, "switch_relays")
			var relays []string
			if err := json.Unmarshal([]byte(r.Result), &relays); err != nil || len(relays) == 0 {
				t.Fatalf("switch_relays: %+v (%v)", r, err)
			}
			for _, u := range env.Net.RelayURLs() {
				if !slices.Contains(relays, u) && !slices.Contains(relays, u+"/") {
					t.Fatalf("switch_relays %v lacks relay %s", relays, u)
				}
			}
		})
	}
	steps := []string{"ping", "get_public_key", "sign_event", "nip44", "sign_psbt", "sign_psbt_hex", "switch_relays", "logout"}
	// logout (NIP-46 "Ending a session"): "ack", then the session is gone.
	checkLogout := func(t *testing.T, got map[string]stepResult) {
		if r := mustStep(t, got, "logout"); r.Result != "ack" {
			t.Fatalf("logout: %+v", r)
		}
		waitNoSession(ctx, t, env, env.ClientPK)
	}

	t.Run("fromBunker", func(t *testing.T) {
		bunker := bunkerURI(ctx, t, env, interopPerms)
		built := buildPSBT(ctx, t, env, 10_000_000)
		psbtFile := writeFile(t, "psbt.txt", built.PSBT)
		p := startClient(ctx, t, env, "node", append([]string{script, "--bunker", bunker, "--sk", env.ClientSK,
			"--peer", peerPK, "--psbt-file", psbtFile, "--timeout", "90"}, steps...)...)
		got := p.results(t)
		check(t, got, built)
		t.Run("client metadata in the audit log", func(t *testing.T) {
			// nostr-tools' connect({name, url}) sends [pubkey, secret, "", '{"name":…,"url":…}'].
			e := lastConnectAudit(ctx, t, env, env.ClientPK)
			for _, w := range []string{`name="cosigner interop test"`, `url="https://interop.example"`, "unverified"} {
				if !strings.Contains(e.Reason, w) {
					t.Fatalf("connect audit %q lacks %s", e.Reason, w)
				}
			}
		})
		t.Run("logout", func(t *testing.T) { checkLogout(t, got) })
	})

	t.Run("fromURI", func(t *testing.T) {
		built := buildPSBT(ctx, t, env, 10_000_000)
		psbtFile := writeFile(t, "psbt.txt", built.PSBT)
		args := []string{script, "--nostrconnect", "--perms", interopPerms, "--sk", env.ClientSK, "--peer", peerPK, "--psbt-file", psbtFile, "--timeout", "90"}
		for _, u := range env.Net.RelayURLs() {
			args = append(args, "--relay", u)
		}
		p := startClient(ctx, t, env, "node", append(args, steps...)...)
		first, ok := <-p.Lines
		if !ok || !strings.HasPrefix(first.NostrConnectURI, "nostrconnect://") {
			t.Fatalf("no nostrconnect URI from the client: %+v", first)
		}
		out, err := env.Cosigner(ctx, "connect", "--perms", interopPerms, first.NostrConnectURI)
		if err != nil {
			t.Fatalf("cosigner connect: %v (%s)", err, out)
		}
		got := p.results(t)
		if r := got["connect"]; r.RemoteSigner != env.KeyA.NostrPubKey {
			t.Fatalf("fromURI connected to remote signer %q, want %s", r.RemoteSigner, env.KeyA.NostrPubKey)
		}
		check(t, got, built)
		t.Run("logout", func(t *testing.T) { checkLogout(t, got) })
	})
}

// waitNoSession waits until client has no session (the remote signer removes it right after
// sending logout's "ack"), or fails when ctx ends.
func waitNoSession(ctx context.Context, t *testing.T, env *scenario.Env, client string) {
	t.Helper()
	db, err := store.Open(ctx, dbPath(env))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for {
		_, ok, err := db.SessionPerms(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the session of %s outlived its logout", client)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastConnectAudit returns the newest "connected" audit entry of client.
func lastConnectAudit(ctx context.Context, t *testing.T, env *scenario.Env, client string) store.AuditEntry {
	t.Helper()
	db, err := store.Open(ctx, dbPath(env))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	es, err := db.AuditLog(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var last store.AuditEntry
	for _, e := range es {
		if e.Client == client && e.Decision == "connected" && !e.At.Before(last.At) {
			last = e
		}
	}
	if last.Client == "" {
		t.Fatalf("no connect of %s in the audit log", client)
	}
	return last
}

// TestInteropRustNostr drives cosigner with rust-nostr's NostrConnect client (PyPI nostr-sdk
// 0.45.1, the newest served) in both flows (a bunker:// URI; a nostrconnect:// URI accepted with
// `cosigner connect`): connect, get_public_key, sign_event, a nip44 round trip, and sign_psbt of
// a real 2-of-3 P2WSH PSBT. NostrConnect itself cannot send sign_psbt (no generic request:
// nostr-connect's send_request is private, its NostrConnectRequest enum is closed, and the
// Python bindings export neither), so the script sends it as a raw NIP-46 request built with
// rust-nostr's nip44, event and relay code, under the same client keys, in the same session.
func TestInteropRustNostr(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	peerSK := nostr.GeneratePrivateKey()
	peerPK, _ := nostr.GetPublicKey(peerSK)
	script := filepath.Join("e2e", "clients", "nostrsdk_client.py")
	steps := []string{"get_public_key", "sign_event", "nip44", "sign_psbt"}
	check := func(t *testing.T, got map[string]stepResult, built scenario.Built) {
		for _, s := range steps {
			t.Logf("%s answered %.1fs after the client started", s, got[s].At)
		}
		t.Run("connect and get_public_key", func(t *testing.T) {
			if r := mustStep(t, got, "get_public_key"); r.Result != env.KeyA.NostrPubKey {
				t.Fatalf("get_public_key: %+v, want %s", r, env.KeyA.NostrPubKey)
			}
		})
		t.Run("sign_event", func(t *testing.T) {
			r := mustStep(t, got, "sign_event")
			noError(t, r)
			if !r.Verified {
				t.Fatalf("rust-nostr did not verify the signed event: %+v", r)
			}
			checkSignedEvent(t, env, r, "signed by cosigner through rust-nostr")
		})
		t.Run("nip44", func(t *testing.T) {
			r := mustStep(t, got, "nip44")
			noError(t, r)
			checkNIP44(t, env, r, peerSK)
		})
		t.Run("sign_psbt", func(t *testing.T) {
			r := mustStep(t, got, "sign_psbt")
			noError(t, r)
			checkCosigned(t, built.PSBT, r.Result)
		})
	}
	t.Run("bunker", func(t *testing.T) {
		built := buildPSBT(ctx, t, env, 10_000_000)
		p := startClient(ctx, t, env, python(t), append([]string{script, "--bunker", bunkerURI(ctx, t, env, interopPerms),
			"--sk", env.ClientSK, "--peer", peerPK, "--psbt-file", writeFile(t, "psbt.txt", built.PSBT), "--timeout", "60"}, steps...)...)
		check(t, p.results(t), built)
	})
	t.Run("nostrconnect", func(t *testing.T) {
		built := buildPSBT(ctx, t, env, 10_000_000)
		args := []string{script, "--nostrconnect", "--perms", interopPerms, "--sk", env.ClientSK, "--peer", peerPK,
			"--psbt-file", writeFile(t, "psbt.txt", built.PSBT), "--timeout", "60"}
		for _, u := range env.Net.RelayURLs() {
			args = append(args, "--relay", u)
		}
		p := startClient(ctx, t, env, python(t), append(args, steps...)...)
		first, ok := <-p.Lines
		if !ok || !strings.HasPrefix(first.NostrConnectURI, "nostrconnect://") {
			t.Fatalf("no nostrconnect URI from the client: %+v; stderr: %s", first, p.stderr.String())
		}
		if out, err := env.Cosigner(ctx, "connect", "--perms", interopPerms, first.NostrConnectURI); err != nil {
			t.Fatalf("cosigner connect: %v (%s)", err, out)
		}
		check(t, p.results(t), built)
		u, err := nip46.ParseNostrConnectURI(first.NostrConnectURI)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("metadata= of the older URI form", func(t *testing.T) {
			// nostr-sdk 0.45 needs metadata={"name":…} in the URI; cosigner reads it as the name.
			db, err := store.Open(ctx, dbPath(env))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ss, err := db.ListSessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range ss {
				if s.Client == u.ClientPubKey {
					if s.Info.Name != "cosigner interop test" {
						t.Fatalf("session name %q", s.Info.Name)
					}
					return
				}
			}
			t.Fatalf("no session for the nostrconnect client")
		})
	})
}

// TestInteropGoNostr drives cosigner with go-nostr v0.38.2's nip46.BunkerClient
// (e2e/clients/gonostrclient, its own process), which speaks the NIP-04 transport of the older
// NIP-46: the daemon runs with COSIGNER_NIP04_LEGACY=true and must answer in NIP-04 too.
// connect (ConnectBunker), get_public_key, sign_event, a nip44 round trip and sign_psbt
// (through BunkerClient.RPC).
func TestInteropGoNostr(t *testing.T) {
	env := setup(t)
	if _, err := env.WaitLog(context.Background(), 0, `msg="remote signer listening"`, "legacy_nip04=true"); err != nil {
		t.Fatal("the daemon did not start in legacy NIP-04 mode (COSIGNER_NIP04_LEGACY=true); go-nostr's BunkerClient needs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "gonostrclient")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./e2e/clients/gonostrclient")
	build.Dir = env.Root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gonostrclient: %v\n%s", err, out)
	}
	peerSK := nostr.GeneratePrivateKey()
	peerPK, _ := nostr.GetPublicKey(peerSK)
	built := buildPSBT(ctx, t, env, 10_000_000)
	p := startClient(ctx, t, env, bin, "--bunker", bunkerURI(ctx, t, env, interopPerms), "--sk", env.ClientSK,
		"--peer", peerPK, "--psbt-file", writeFile(t, "psbt.txt", built.PSBT), "--timeout", "90s",
		"get_public_key", "sign_event", "nip44", "sign_psbt")
	got := p.results(t)
	t.Run("connect and get_public_key", func(t *testing.T) {
		if r := mustStep(t, got, "get_public_key"); r.Result != env.KeyA.NostrPubKey {
			t.Fatalf("get_public_key: %+v, want %s", r, env.KeyA.NostrPubKey)
		}
	})
	t.Run("sign_event", func(t *testing.T) {
		r := mustStep(t, got, "sign_event")
		noError(t, r)
		checkSignedEvent(t, env, r, "signed by cosigner through go-nostr")
	})
	t.Run("nip44", func(t *testing.T) {
		r := mustStep(t, got, "nip44")
		noError(t, r)
		checkNIP44(t, env, r, peerSK)
	})
	t.Run("sign_psbt", func(t *testing.T) {
		r := mustStep(t, got, "sign_psbt")
		noError(t, r)
		checkCosigned(t, built.PSBT, r.Result)
	})
}
