package devnet

// electrumx.go — the Electrum server (ElectrumX) and the few lines of Electrum
// protocol the harness speaks to wait for it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// electrumPollInterval is ElectrumX's DAEMON_POLL_INTERVAL_BLOCKS and
// DAEMON_POLL_INTERVAL_MEMPOOL: how often it asks the node for new blocks and
// mempool transactions, which bounds notification latency on this network.
const electrumPollInterval = 100 * time.Millisecond

// startElectrumX starts ElectrumX (through electrumx_launch.py, which sets
// its padding wait) against the RPC proxy and waits until it serves the same
// tip as btcd.
func (n *Network) startElectrumX(ctx context.Context) error {
	dbDir := filepath.Join(n.dir, "electrumx-db")
	if err := mkdirAll(dbDir); err != nil {
		return err
	}
	if err := n.ensureElectrumTLS(); err != nil {
		return err
	}
	ms := strconv.Itoa(int(electrumPollInterval / time.Millisecond))
	env := []string{
		"COIN=Bitcoin",
		"NET=regtest",
		fmt.Sprintf("DAEMON_URL=http://%s:%s@127.0.0.1:%d/", btcdRPCUser, btcdRPCPass, n.proxyPort),
		"DB_DIRECTORY=" + dbDir,
		"DB_ENGINE=leveldb",
		fmt.Sprintf("SERVICES=tcp://127.0.0.1:%d,ssl://127.0.0.1:%d", n.electrumPort, n.electrumTLSPort),
		"SSL_CERTFILE=" + n.electrumCertFile(),
		"SSL_KEYFILE=" + n.electrumKeyFile(),
		"ALLOW_ROOT=1",
		"PEER_DISCOVERY=off",
		"DAEMON_POLL_INTERVAL_BLOCKS=" + ms,
		"DAEMON_POLL_INTERVAL_MEMPOOL=" + ms,
		"LOG_LEVEL=info",
		"PYTHONUNBUFFERED=1",
		"DEVNET_ELECTRUMX_PADDING_WAIT=" + strconv.FormatFloat(n.electrumPaddingWait.Seconds(), 'f', -1, 64),
	}
	env = append(env, n.electrumCostEnv()...)
	p, err := startProcess("electrumx", n.tools.python, []string{n.tools.launcher}, env, n.dir, filepath.Join(n.dir, "electrumx.log"), n.log)
	if err != nil {
		return err
	}
	n.electrumx = p
	if err := n.waitElectrumXSynced(ctx); err != nil {
		if p.exited() {
			return p.exitError()
		}
		return fmt.Errorf("electrumx on 127.0.0.1:%d: %w; last lines of %s:\n%s", n.electrumPort, err, p.logPath, TailFile(p.logPath, 20))
	}
	return nil
}

// waitElectrumSynced waits until every running Electrum server (ElectrumX,
// and electrs when the network has it) serves btcd's best block.
func (n *Network) waitElectrumSynced(ctx context.Context) error {
	if err := n.waitElectrumXSynced(ctx); err != nil {
		return err
	}
	return n.waitElectrsSynced(ctx)
}

// waitElectrumXSynced waits until ElectrumX's tip (blockchain.headers.subscribe)
// is btcd's best block, by hash.
func (n *Network) waitElectrumXSynced(ctx context.Context) error {
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		if n.electrumx != nil && n.electrumx.exited() {
			return false, n.electrumx.exitError()
		}
		best, height, err := n.rpc.GetBestBlock()
		if err != nil {
			return false, fmt.Errorf("btcd getbestblock: %w", err)
		}
		eh, eheight, err := n.electrumTip(ctx)
		if err != nil {
			n.log.Debug("electrumx not ready", "err", err)
			return false, nil
		}
		return eheight == int64(height) && eh == *best, nil
	})
}

// electrumTip asks ElectrumX for its tip over the harness's Electrum
// connection (the project's own client, chainwatch/electrum), dialling it when
// needed.
func (n *Network) electrumTip(ctx context.Context) (chainhash.Hash, int64, error) {
	n.ecMu.Lock()
	defer n.ecMu.Unlock()
	if n.ec == nil {
		c, err := electrum.Dial(ctx, n.ElectrumURL(), electrum.Options{ClientName: "cosigner-devnet", PingInterval: -1})
		if err != nil {
			return chainhash.Hash{}, 0, err
		}
		n.ec = c
	}
	var tip struct {
		Height int64  `json:"height"`
		Hex    string `json:"hex"`
	}
	if err := n.ec.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
		n.ec.Close()
		n.ec = nil
		return chainhash.Hash{}, 0, err
	}
	raw, err := hex.DecodeString(tip.Hex)
	if err != nil || len(raw) != 80 {
		return chainhash.Hash{}, 0, fmt.Errorf("electrumx: bad header %q", tip.Hex)
	}
	return chainhash.DoubleHashH(raw), tip.Height, nil
}

// ecState holds the harness's Electrum connection (see electrumTip) and ElectrumX's TLS
// service (see ensureElectrumTLS).
type ecState struct {
	ecMu sync.Mutex
	ec   *electrum.Client

	electrumTLSPort int    // ElectrumX's ssl:// port, picked at the first start
	electrumCertFP  string // SHA-256 of its certificate, lowercase hex
}

// ElectrumTLSURL is ElectrumX's TLS service as "ssl://127.0.0.1:PORT". Its certificate is
// self-signed (generated at the first start, kept across restarts); trust it by pinning
// ElectrumTLSFingerprint or on first use.
func (n *Network) ElectrumTLSURL() string {
	return fmt.Sprintf("ssl://127.0.0.1:%d", n.electrumTLSPort)
}

// ElectrumTLSFingerprint is the SHA-256 fingerprint of ElectrumX's TLS certificate (lowercase
// hex, as electrum.Fingerprint gives it).
func (n *Network) ElectrumTLSFingerprint() string { return n.electrumCertFP }

func (n *Network) electrumCertFile() string { return filepath.Join(n.dir, "electrumx-tls", "cert.pem") }
func (n *Network) electrumKeyFile() string  { return filepath.Join(n.dir, "electrumx-tls", "key.pem") }

// ensureElectrumTLS picks the ssl:// port and writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost, once: a restarted ElectrumX keeps both, so pins stay valid.
func (n *Network) ensureElectrumTLS() error {
	if n.electrumTLSPort == 0 {
		p, err := pickPort("electrumx ssl", 0)
		if err != nil {
			return err
		}
		n.electrumTLSPort = p
	}
	if n.electrumCertFP != "" {
		return nil
	}
	if err := mkdirAll(filepath.Dir(n.electrumCertFile())); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("electrumx tls: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return fmt.Errorf("electrumx tls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "cosigner devnet electrumx"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("electrumx tls: certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("electrumx tls: key: %w", err)
	}
	if err := os.WriteFile(n.electrumKeyFile(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("electrumx tls: %w", err)
	}
	if err := os.WriteFile(n.electrumCertFile(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("electrumx tls: %w", err)
	}
	n.electrumCertFP = electrum.Fingerprint(der)
	return nil
}
