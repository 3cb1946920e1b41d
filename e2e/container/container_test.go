package container

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/store"
)

const (
	passInContainer   = "/run/secrets/cosigner_passphrase"
	policyInContainer = "/etc/cosigner/policy.yaml"
	imageUID          = 10001
)

// TestContainer builds the image from the Dockerfile on a Docker engine the test starts
// (scripts/container-test.sh) and runs it against the local test network, as an operator
// would: `init` into a named volume, `run` with the passphrase as a secret file and the policy
// mounted read-only, until the image's HEALTHCHECK reports healthy; the daemon runs as uid
// 10001, answers a real sign_psbt from nostr-tools with its signature, stops gracefully on
// `docker stop`, and a new container on the same volume still knows the client and the audit
// log. It also checks what a bind-mounted /data needs (uid 10001) and that the health port is
// reachable when published on the default bridge network.
func TestContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("container test: needs a Docker engine and the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := devnet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	eng := startEngine(ctx, t, root)
	dir := t.TempDir()
	c := newCosignerFiles(t, dir)

	t.Run("bind-mounted /data must belong to uid 10001", func(t *testing.T) {
		testBindMount(ctx, t, eng, c)
	})

	net, err := devnet.Start(ctx, devnet.Config{Dir: filepath.Join(dir, "network")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })

	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	vol := "cosigner-test-" + suffix
	eng.mustDocker(ctx, t, "volume", "create", vol)
	t.Cleanup(func() { eng.docker(context.Background(), "volume", "rm", "-f", vol) })

	// init into the named volume; key A's public half is read back out of it.
	initName := "cosigner-init-" + suffix
	t.Cleanup(func() { eng.docker(context.Background(), "rm", "-f", "-v", initName) })
	eng.mustDocker(ctx, t, append([]string{"run", "--name", initName, "--network", "none", "-v", vol + ":/data"},
		append(c.secretArgs(), eng.image, "init")...)...)
	keyA, _, err := keystore.ReadPublic(filepath.Join(eng.copyOut(ctx, t, initName, "/data"), "key.json"))
	if err != nil {
		t.Fatal(err)
	}

	env := newWallet(ctx, t, root, dir, net, keyA, c.policyDir)
	hp, err := devnet.FreePort("cosigner container health endpoint")
	if err != nil {
		t.Fatal(err)
	}
	env.Daemon.HealthAddr = fmt.Sprintf("127.0.0.1:%d", hp)
	runArgs := append([]string{"run", "-d", "--network", "host", "-v", vol + ":/data", "-v", c.policyDir + ":/etc/cosigner:ro",
		"-e", "COSIGNER_POLICY=" + policyInContainer,
		"-e", "COSIGNER_DESCRIPTOR=" + env.Descriptor.String(),
		"-e", "COSIGNER_ELECTRUM_URL=" + net.ElectrumURL(),
		"-e", "COSIGNER_RELAYS=" + strings.Join(net.RelayURLs(), ","),
		"-e", "COSIGNER_HEALTH_ADDR=" + env.Daemon.HealthAddr}, c.secretArgs()...)

	first := "cosigner-run1-" + suffix
	t.Cleanup(func() { eng.docker(context.Background(), "rm", "-f", "-v", first) })
	startDaemon(ctx, t, eng, first, runArgs)

	t.Run("runs as uid 10001", func(t *testing.T) { checkUser(ctx, t, eng, first) })

	bunker, err := eng.docker(ctx, "exec", first, "cosigner", "bunker-uri")
	if err != nil || !strings.HasPrefix(bunker, "bunker://"+keyA.NostrPubKey+"?") {
		t.Fatalf("docker exec cosigner bunker-uri: %q, %v", bunker, err)
	}
	signedTx := testSignPSBT(ctx, t, env, bunker)

	stopGracefully(ctx, t, eng, first)
	second := "cosigner-run2-" + suffix
	t.Cleanup(func() { eng.docker(context.Background(), "rm", "-f", "-v", second) })
	startDaemon(ctx, t, eng, second, runArgs)
	t.Run("a new container on the volume keeps the client and the audit log", func(t *testing.T) {
		ans, err := env.NIP46(ctx, bunker, env.ClientSK, "ping")
		if err != nil || ans.Result != "pong" {
			t.Fatalf("ping from the connected client in the new container: %+v, %v", ans, err)
		}
		// A stranger (a key with no session) reusing the spent secret is not answered at all
		// (signer: unknown senders cost no write and get no answer), so the client times out.
		ans, err = env.NIP46(ctx, bunker, nostr.GeneratePrivateKey(), "ping")
		if err == nil || !strings.Contains(err.Error(), "timeout") || ans.Result != "" {
			t.Fatalf("a stranger reusing the spent secret in the new container was answered: %+v, %v", ans, err)
		}
		stopGracefully(ctx, t, eng, second)
		checkAudit(ctx, t, eng.copyOut(ctx, t, second, "/data"), signedTx)
	})

	t.Run("health port published on the bridge network", func(t *testing.T) {
		testPublishedPort(ctx, t, eng, vol, c, env.Descriptor.String(), suffix)
	})
}

// cosignerFiles are the host files the containers mount: the passphrase (a secret file owned by
// the image's user, mode 0400, as a compose secret is) and a directory holding the policy.
type cosignerFiles struct {
	passFile, policyDir string
}

func newCosignerFiles(t *testing.T, dir string) cosignerFiles {
	c := cosignerFiles{passFile: filepath.Join(dir, "passphrase"), policyDir: filepath.Join(dir, "policy")}
	if err := os.WriteFile(c.passFile, []byte("container passphrase "+nostr.GeneratePrivateKey()[:16]+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(c.passFile, imageUID, imageUID); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// secretArgs are the docker run arguments every container gets: the network and the passphrase.
func (c cosignerFiles) secretArgs() []string {
	return []string{"-e", "COSIGNER_NETWORK=regtest", "-v", c.passFile + ":" + passInContainer + ":ro",
		"-e", "COSIGNER_PASSPHRASE_FILE=" + passInContainer}
}

// newWallet makes the 2-of-3 wallet around key A (in the container's volume): keys B and C from
// BDK, the descriptor, and a policy letting one new client call sign_psbt up to 1 BTC.
func newWallet(ctx context.Context, t *testing.T, root, dir string, net *devnet.Network, keyA keystore.PublicInfo, policyDir string) *scenario.Env {
	t.Helper()
	env := &scenario.Env{Root: root, Dir: dir, Net: net, KeyA: keyA,
		Daemon: &scenario.Daemon{Name: "container", PolicyFile: filepath.Join(policyDir, "policy.yaml")}}
	for _, k := range []*scenario.BDKKey{&env.KeyB, &env.KeyC} {
		if err := env.BDKJSON(ctx, k, "keys", "--network", "regtest"); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := scenario.WalletDescriptor("wsh", keyA.KeyOrigin(), env.KeyB.XpubKey, env.KeyC.XpubKey)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := descriptor.Checksum(pub)
	if err != nil {
		t.Fatal(err)
	}
	if env.Descriptor, err = descriptor.Parse(pub+"#"+sum, net.Params(), descriptor.RequireChecksum()); err != nil {
		t.Fatal(err)
	}
	if env.BDKDescriptor, err = scenario.WalletDescriptor("wsh", keyA.KeyOrigin(), env.KeyB.XprvKey, env.KeyC.XpubKey); err != nil {
		t.Fatal(err)
	}
	env.ClientSK = nostr.GeneratePrivateKey()
	env.ClientPK, _ = nostr.GetPublicKey(env.ClientSK)
	if err := env.WritePolicy("1 BTC"); err != nil {
		t.Fatal(err)
	}
	// The policy holds public keys only; the container's user reads it through the read-only mount.
	if err := os.Chmod(env.Daemon.PolicyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	return env
}

// startDaemon starts `cosigner run` in a detached container and waits for its HEALTHCHECK.
func startDaemon(ctx context.Context, t *testing.T, eng *engine, name string, runArgs []string) {
	t.Helper()
	args := append([]string{runArgs[0], "--name", name}, runArgs[1:]...)
	eng.mustDocker(ctx, t, append(args, eng.image)...)
	start := time.Now()
	if err := eng.waitHealthy(ctx, name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("container %s healthy %s after docker run", name, time.Since(start).Round(100*time.Millisecond))
}

// checkUser: the image says uid 10001, and the daemon's process (PID 1 of the container, seen by
// the engine's ps) runs as uid and gid 10001.
func checkUser(ctx context.Context, t *testing.T, eng *engine, name string) {
	if u, err := eng.inspect(ctx, name, "{{.Config.User}}"); err != nil || u != "10001:10001" {
		t.Fatalf("image user %q, %v; want 10001:10001", u, err)
	}
	out := eng.mustDocker(ctx, t, "top", name, "-eo", "pid,uid,gid,args")
	lines := strings.Split(out, "\n")
	if len(lines) < 2 {
		t.Fatalf("docker top %s: %q", name, out)
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != "10001" || f[2] != "10001" {
			t.Fatalf("a process of the container does not run as 10001:10001: %q", line)
		}
	}
}

// testSignPSBT funds the wallet, has BDK build and sign (key B) a payment, and sends it as
// sign_psbt from nostr-tools' BunkerSigner to the cosigner in the container; the answer carries
// the cosigner's partial signature on every input. It returns the unsigned transaction's id.
func testSignPSBT(ctx context.Context, t *testing.T, env *scenario.Env, bunker string) string {
	t.Helper()
	if _, err := env.FundConfirmed(ctx, btcutil.Amount(btcutil.SatoshiPerBitcoin)); err != nil {
		t.Fatal(err)
	}
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	built, err := env.BuildPayment(ctx, payee, 30_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := env.NIP46(ctx, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error != "" {
		t.Fatalf("sign_psbt through the container refused: %s", ans.Error)
	}
	raw, err := base64.StdEncoding.DecodeString(ans.Result)
	if err != nil {
		t.Fatalf("sign_psbt result is not base64: %v", err)
	}
	p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
	if err != nil {
		t.Fatalf("sign_psbt result is not a PSBT: %v", err)
	}
	for i, in := range p.Inputs {
		if len(in.PartialSigs) != 2 {
			t.Fatalf("input %d has %d partial signatures, want 2 (B's and the container's)", i, len(in.PartialSigs))
		}
	}
	return p.UnsignedTx.TxHash().String()
}

// stopGracefully: `docker stop` (SIGTERM) ends the daemon with exit status 0 and its log says
// it stopped because it was asked to.
func stopGracefully(ctx context.Context, t *testing.T, eng *engine, name string) {
	t.Helper()
	eng.mustDocker(ctx, t, "stop", "--time", "30", name)
	code, err := eng.inspect(ctx, name, "{{.State.ExitCode}} {{.State.OOMKilled}}")
	logs := eng.logs(ctx, name)
	if err != nil || code != "0 false" {
		t.Fatalf("container %s after docker stop: exit status %q, %v; log:\n%s", name, code, err, tail(logs, 30))
	}
	if !strings.Contains(logs, `"msg":"stopping"`) {
		t.Fatalf("container %s's log has no graceful stop:\n%s", name, tail(logs, 30))
	}
}

// checkAudit: the database copied out of the volume holds the sign_psbt decision (signed).
func checkAudit(ctx context.Context, t *testing.T, dataCopy, unsignedTxID string) {
	t.Helper()
	db, err := store.Open(ctx, filepath.Join(dataCopy, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log, err := db.AuditLog(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range log {
		if a.Method == "sign_psbt" && a.Decision == "signed" && a.UnsignedTxID == unsignedTxID {
			return
		}
	}
	t.Fatalf("no signed sign_psbt audit entry for %s in the volume's database (%d entries)", unsignedTxID, len(log))
}

// testBindMount: `init` into a bind-mounted host directory owned by root fails with a message
// naming the permission problem and uid 10001; after `chown 10001:10001` it succeeds and the key
// file belongs to 10001.
func testBindMount(ctx context.Context, t *testing.T, eng *engine, c cosignerFiles) {
	host := t.TempDir()
	args := append([]string{"run", "--rm", "--network", "none", "-v", host + ":/data"}, append(c.secretArgs(), eng.image, "init")...)
	_, err := eng.docker(ctx, args...)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "10001") {
		t.Fatalf("init into a root-owned bind mount: %v; want a permission error naming uid 10001", err)
	}
	if err := os.Chown(host, imageUID, imageUID); err != nil {
		t.Fatal(err)
	}
	eng.mustDocker(ctx, t, args...)
	fi, err := os.Stat(filepath.Join(host, "key.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("key.json mode %v: readable by others", fi.Mode())
	}
}

// testPublishedPort runs the image on Docker's default bridge network with its own
// COSIGNER_HEALTH_ADDR (0.0.0.0:8080) and the port published on the host's loopback
// (-p 127.0.0.1:PORT:8080): /healthz answers through the published port. The test network is not
// reachable from the bridge, so the daemon is not healthy there; any HTTP answer shows the port.
func testPublishedPort(ctx context.Context, t *testing.T, eng *engine, vol string, c cosignerFiles, desc, suffix string) {
	port, err := devnet.FreePort("published health port")
	if err != nil {
		t.Fatal(err)
	}
	name := "cosigner-bridge-" + suffix
	t.Cleanup(func() { eng.docker(context.Background(), "rm", "-f", "-v", name) })
	args := append([]string{"run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "-v", vol + ":/data",
		"-v", c.policyDir + ":/etc/cosigner:ro", "-e", "COSIGNER_POLICY=" + policyInContainer,
		"-e", "COSIGNER_DESCRIPTOR=" + desc, "-e", "COSIGNER_RELAYS=ws://127.0.0.1:9/"}, c.secretArgs()...)
	eng.mustDocker(ctx, t, append(args, eng.image)...)
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Logf("%s answered HTTP %d through the published port", url, resp.StatusCode)
			break
		}
		if st, _ := eng.inspect(ctx, name, "{{.State.Status}}"); st != "running" || time.Now().After(deadline) {
			t.Fatalf("GET %s: %v (container %s); log:\n%s", url, err, st, tail(eng.logs(ctx, name), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopGracefully(ctx, t, eng, name)
}
