package main

import (
	"context"

	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/store"
)

// cmdRun runs the daemon (package daemon) with the configuration read from the environment. It
// returns when ctx is cancelled (SIGTERM/SIGINT) after a graceful stop, or with the first
// component's fatal error.
func cmdRun(ctx context.Context, cfg *Config) error {
	dc, err := cfg.daemonConfig()
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, dc)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// daemonConfig is the daemon's configuration from the COSIGNER_* settings. Errors: the
// Electrum TLS pin file does not parse.
func (c *Config) daemonConfig() (daemon.Config, error) {
	params, err := c.Params()
	if err != nil {
		return daemon.Config{}, err
	}
	etls, err := c.ElectrumTLS()
	if err != nil {
		return daemon.Config{}, err
	}
	return daemon.Config{
		Params: params, Descriptor: c.Descriptor, KeyFile: c.KeyFile, Passphrase: c.passphrase, DBPath: c.DBPath(), PolicyFile: c.PolicyFile,
		ElectrumServers: c.ElectrumServers, ElectrumURL: c.ElectrumURL, ElectrumTLS: etls, Lookahead: c.Lookahead,
		Relays: c.Relays, RelayQuorum: c.RelayQuorum, NIP04Legacy: c.NIP04Legacy, ClientRate: c.ClientRate, ClientBurst: c.ClientBurst,
		ElectrumNostrPerMin: c.ElectrumNostrPerMin, ElectrumNostrReplyAll: c.ElectrumNostrReplyAll,
		NotifyRecipients: c.NotifyRecipients, HealthAddr: c.HealthAddr, PprofAddr: c.PprofAddr, Limits: c.Limits(),
		Retention: store.Retention{MaxAge: c.RetentionAge, MaxAuditRows: c.RetentionAuditRows, MaxRequestRows: c.RetentionRequestRows,
			MaxSeenEvents: c.RetentionSeenEvents},
		RetentionInterval: c.RetentionInterval,
		Logger:            c.logger(),
	}, nil
}
