package daemon

// electrumnostr.go — Electrum's "Send to cosigner" channel (signer/psbtnostr): made when the
// registered wallet is one Electrum can hold (sortedmulti, P2WSH or P2SH-P2WSH, /<0;1>/*); it
// listens only while the policy lists the channel electrum_nostr.

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer/psbtnostr"
)

// responders routes the late answers of held requests: the electrum_nostr channel's to the
// channel, every other client's to the NIP-46 remote signer.
type responders struct {
	remote   psbtflow.Responder
	electrum psbtflow.Responder // nil until made (or when the wallet is not Electrum's)
	log      *slog.Logger
}

// Respond implements psbtflow.Responder.
func (r *responders) Respond(ctx context.Context, client, requestID, result string, err error) error {
	if client == policy.ChannelElectrumNostr {
		if r.electrum == nil {
			// No channel for this wallet (a descriptor Electrum cannot hold): nobody to answer;
			// marked answered rather than retried at every tick.
			r.log.Warn("held electrum_nostr request ended, but this wallet has no Electrum channel: not answered", "id", requestID)
			return nil
		}
		return r.electrum.Respond(ctx, client, requestID, result, err)
	}
	return r.remote.Respond(ctx, client, requestID, result, err)
}

// newElectrumNostr makes the channel over COSIGNER_RELAYS, deciding through the psbtflow
// service like any sign_psbt; nil (logged) when the wallet is not one Electrum can hold.
func (d *Daemon) newElectrumNostr(context.Context) error {
	w, err := psbtnostr.NewWallet(d.desc, d.keys.AccountXPub())
	if err != nil {
		d.log.Info("Electrum's Send to cosigner is not available for this wallet", "reason", err)
		return nil
	}
	// Its own connections to the relays, authenticated (NIP-42) with the channel's key: relays
	// that serve kind-4 messages only to their p-tagged recipient after AUTH (as Electrum's
	// library authenticates with that key too) then serve them to cosigner; the bunker key would
	// not do. Connected only when the channel subscribes or answers.
	pool, err := relaypool.New(d.cfg.Relays, relaypool.Options{Logger: d.log.With("component", "electrum_nostr"), Quorum: d.cfg.RelayQuorum,
		AuthSigner: NostrAuthSigner(w.OwnSecret)})
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_RELAYS: %w", err)
	}
	d.onClose(pool.Close)
	per := d.cfg.ElectrumNostrPerMin
	if per < 1 {
		per = 10
	}
	ch, err := psbtnostr.New(psbtnostr.Config{Wallet: w, Pool: pool, Signer: d.flow, Records: d.db, Policy: d.policies.Policy,
		Ready: d.watcher.Ready(), ReplyToAll: d.cfg.ElectrumNostrReplyAll, Rate: rate.Limit(float64(per) / 60), Burst: per,
		Now: d.clock.Now, Log: d.log})
	if err != nil {
		return err
	}
	d.electrum = ch
	d.responders.electrum = ch
	d.reqMetrics.electrum = ch
	return nil
}

// electrumNostrReasons are the reasons psbtnostr.Channel.Drops reports (a fixed label set).
var electrumNostrReasons = []string{"not_for_us", "not_cosigner", "stale", "oversized", "rate", "undecryptable", "malformed", "seen", "disabled", "store"}

// electrumNostrCollectors report the channel's drops as
// cosigner_electrum_nostr_dropped_total{reason} and the events handed to the policy as
// cosigner_electrum_nostr_requests_total (0 while the channel does not exist).
func electrumNostrCollectors(ch func() *psbtnostr.Channel) []prometheus.Collector {
	out := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cosigner_electrum_nostr_requests_total",
		Help: "Electrum psbt_nostr messages handed to the policy (signed, held or refused)."}, func() float64 {
		if c := ch(); c != nil {
			return float64(c.Handled())
		}
		return 0
	})}
	for _, reason := range electrumNostrReasons {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cosigner_electrum_nostr_dropped_total",
			Help:        "Electrum psbt_nostr events dropped with no decision and no answer, by reason (psbtnostr.Channel.Drops).",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 {
			if c := ch(); c != nil {
				return float64(c.Drops()[reason])
			}
			return 0
		}))
	}
	return out
}
