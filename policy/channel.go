package policy

// channel.go — clients that are not NIP-46 sessions: channels through which PSBTs arrive from
// senders this co-signer cannot authenticate (issue 14 §1).

import (
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ChannelElectrumNostr is the client name psbtflow gives PSBTs that arrive through Electrum's
// psbt_nostr plugin ("Send to cosigner": kind-4 NIP-04 messages between the co-signers of an
// Electrum multisig wallet, signer/psbtnostr). The plugin's keys are derived from the wallet's
// xpubs, so anyone who knows them can send as any co-signer: the sender is unauthenticated. A
// policy enables the channel with a client entry `{name: electrum, channel: electrum_nostr}`
// (no pubkey) and rules match it by that name in clients:, typically with a lower cap or a hold.
// It can never collide with a NIP-46 client, whose name is a 64-hex-character pubkey.
const ChannelElectrumNostr = "electrum_nostr"

// channels are the channel names a client entry may give under channel:.
var channels = []string{ChannelElectrumNostr}

// IsChannel reports whether client names a channel (ChannelElectrumNostr) rather than a NIP-46
// client pubkey.
func IsChannel(client string) bool { return slices.Contains(channels, client) }

// ChannelEnabled reports whether p lets channel (ChannelElectrumNostr) ask for signatures at
// now: a client entry with that channel which may call sign_psbt is in every policy in force
// (a channel added by a loosened policy counts only once that policy applies alone). A nil p
// enables nothing.
func ChannelEnabled(p *Policy, channel string, now time.Time) bool {
	if p == nil || !IsChannel(channel) {
		return false
	}
	return Authorize(p, channel, "sign_psbt", now).Outcome == Allow
}

// clientID reads a client entry's identity: its pubkey (hex, from npub1… or hex) or, for a
// channel, the channel's name. Exactly one of pubkey and channel is given.
func (v *validator) clientID(item *yaml.Node, m map[string]*yaml.Node) (string, bool) {
	pk, hasPK := m["pubkey"]
	ch, hasCh := m["channel"]
	switch {
	case hasPK && hasCh:
		v.errorf(ch, "a client has either a pubkey (a NIP-46 client) or a channel, not both")
		return "", false
	case hasCh:
		name, ok := v.scalar(ch, "channel", ChannelElectrumNostr)
		if !ok {
			return "", false
		}
		if !IsChannel(name) {
			v.errorf(ch, "unknown channel %q (known: %s)", name, strings.Join(channels, ", "))
			return "", false
		}
		return name, true
	case !hasPK:
		v.errorf(item, "client needs a pubkey (npub1… or 64 hex characters) or a channel (%s)", strings.Join(channels, ", "))
		return "", false
	}
	hexpk, err := parsePubKey(pk.Value)
	if err != nil {
		v.errorf(pk, "pubkey: %v", err)
		return "", false
	}
	return hexpk, true
}
