package daemon

// electrumnostr.go — Electrum's "Send to cosigner" channel (signer/psbtnostr): made when the
// registered wallet is one Electrum can hold (sortedmulti, P2WSH or P2SH-P2WSH, /<0;1>/*); it
// listens only while the policy lists the channel electrum_nostr.

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"

	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/signer/psbtnostr"
)

// responders routes the late answers of held requests: the electrum_nostr channel's to the
// channel, every other client's to the NIP-46 remote signer.
type responders struct {
	remote   psbtflow.Responder
	electrum psbtflow.Responder // nil until made (or when the wallet is not Electrum's)
}

// Respond implements psbtflow.Responder.
func (r *responders) Respond(ctx context.Context, client, requestID, result string, err error) error {
	if client == policy.ChannelElectrumNostr {
		if r.electrum == nil {
			return fmt.Errorf("the electrum_nostr channel is not running (the wallet is not one Electrum can hold)")
		}
		return r.electrum.Respond(ctx, client, requestID, result, err)
	}
	return r.remote.Respond(ctx, client, requestID, result, err)
}

// newElectrumNostr makes the channel over the main relay pool, deciding through the psbtflow
// service like any sign_psbt; nil (logged) when the wallet is not one Electrum can hold.
func (d *Daemon) newElectrumNostr(context.Context) error {
	w, err := psbtnostr.NewWallet(d.desc, d.keys.AccountXPub())
	if err != nil {
		d.log.Info("Electrum's Send to cosigner is not available for this wallet", "reason", err)
		return nil
	}
	per := d.cfg.ElectrumNostrPerMin
	if per < 1 {
		per = 10
	}
	ch, err := psbtnostr.New(psbtnostr.Config{Wallet: w, Pool: d.pool, Signer: d.flow, Records: d.db, Policy: d.policies.Policy,
		Ready: d.watcher.Ready(), ReplyToAll: d.cfg.ElectrumNostrReplyAll, Rate: rate.Limit(float64(per) / 60), Burst: per,
		Now: d.clock.Now, Log: d.log})
	if err != nil {
		return err
	}
	d.electrum = ch
	d.responders.electrum = ch
	return nil
}
