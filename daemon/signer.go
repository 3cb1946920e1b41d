package daemon

import (
	"encoding/hex"
	"log/slog"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

// newRemoteSigner wires the NIP-46 remote signer: legacy NIP-04 and the per-client rate limit
// from the configuration, the clients' own relays (nostrconnect) as extra pools (NIP-42 AUTH with
// the bunker key like the main pool), and get_wallet. sign_psbt, approve and psbt_status are
// registered by newSigner once the psbtflow service exists.
func newRemoteSigner(cfg Config, keys *keystore.Keys, desc *descriptor.Descriptor, pool *relaypool.Pool, db *store.DB,
	rm *requestMetrics, log *slog.Logger) (*signer.RemoteSigner, error) {
	remote, err := signer.NewRemoteSigner(keys.NostrSecretKey(), pool, db, log,
		signer.WithLegacyNIP04(cfg.NIP04Legacy),
		signer.WithRateLimit(cfg.ClientRate, cfg.ClientBurst),
		signer.WithClientRelays(func(urls []string) (signer.ClosablePool, error) {
			return relaypool.New(urls, relaypool.Options{Logger: log, AuthSigner: NostrAuthSigner(keys.NostrSecretKey())})
		}))
	if err != nil {
		return nil, err
	}
	var fps []string
	for _, k := range desc.Keys() {
		fps = append(fps, hex.EncodeToString(k.Fingerprint[:]))
	}
	if err := remote.Handle("get_wallet", rm.wrap("get_wallet", signer.WalletMethod(signer.WalletInfo{
		Descriptor: desc.String(), Fingerprints: fps, Network: desc.Network().Name, KeyOrigin: keys.Public.KeyOrigin(),
	}))); err != nil {
		return nil, err
	}
	return remote, nil
}
