package psbtnostr

// channel.go — the running channel: subscribe, filter, hand to psbtflow, answer.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"golang.org/x/time/rate"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// Signer decides a sign_psbt under the policy (satisfied by *psbtflow.Service).
type Signer interface {
	SignPSBT(ctx context.Context, req nip46.Call) (string, error)
}

// Pool is what the channel needs from the relays (satisfied by *relaypool.Pool).
type Pool interface {
	Subscribe(ctx context.Context, filter nostr.Filter) <-chan relaypool.Event
	Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult
}

// Records keeps the events taken in (satisfied by *store.DB, migration 0016).
type Records interface {
	FirstSeenElectrumNostr(ctx context.Context, ev store.ElectrumNostrEvent, ttl time.Duration) (bool, error)
	SetElectrumNostrPending(ctx context.Context, id string, pending bool) error
	ElectrumNostrEventByID(ctx context.Context, id string) (store.ElectrumNostrEvent, bool, error)
	ForgetElectrumNostr(ctx context.Context, id string) error
}

// Defaults of Config.
const (
	// DefaultRate and DefaultBurst bound the events taken in past the filter (decrypted,
	// recorded, decided), all senders together: anyone who knows the xpubs can send as any
	// co-signer, so a per-sender budget would bound nothing.
	DefaultRate  = rate.Limit(1.0 / 6) // 10 a minute
	DefaultBurst = 10
	// PolicyPoll is how often Run looks whether the policy enables the channel.
	PolicyPoll = 5 * time.Second
)

// Config is what a Channel runs with.
type Config struct {
	Wallet  *Wallet
	Pool    Pool
	Signer  Signer
	Records Records
	// Policy returns the policy in force; the channel listens only while it lists the
	// policy.ChannelElectrumNostr client.
	Policy func() *policy.Policy
	// Ready is closed once the wallet view is complete (events are taken in only then, as
	// Electrum waits for its wallet to be up to date); nil: at once.
	Ready <-chan struct{}
	// ReplyToAll also sends the signed PSBT to every other co-signer, not only the sender.
	ReplyToAll bool
	// Rate and Burst: Default* when zero.
	Rate  rate.Limit
	Burst int
	Now   func() time.Time // time.Now when nil
	Log   *slog.Logger
}

// Channel serves Electrum's psbt_nostr messages; it is also the psbtflow.Responder of the
// requests it handed on (held ones are answered when they end). Make it with New, run it with
// Run.
type Channel struct {
	cfg   Config
	lim   *rate.Limiter
	log   *slog.Logger
	drops sync.Map // reason → *atomic.Uint64
	// handled counts events decided (signed, held or refused by psbtflow).
	handled atomic.Uint64
}

// New checks cfg and returns the Channel.
func New(cfg Config) (*Channel, error) {
	if cfg.Wallet == nil || cfg.Pool == nil || cfg.Signer == nil || cfg.Records == nil || cfg.Policy == nil {
		return nil, errors.New("psbtnostr: Wallet, Pool, Signer, Records and Policy are required")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Channel{cfg: cfg, lim: rate.NewLimiter(cfg.Rate, cfg.Burst), log: cfg.Log.With("component", "electrum_nostr")}, nil
}

// Filter is the subscription: the plugin's own receive filter.
func (c *Channel) Filter(now time.Time) nostr.Filter {
	since := nostr.Timestamp(now.Add(-KeepDelay).Unix())
	return nostr.Filter{Kinds: []int{Kind}, Tags: nostr.TagMap{"p": {c.cfg.Wallet.OwnPubKey}}, Since: &since, Limit: SubscribeLimit}
}

// Run listens while the policy enables the channel (checked every PolicyPoll) and the wallet
// view is ready, until ctx ends; it returns nil then.
func (c *Channel) Run(ctx context.Context) error {
	if c.cfg.Ready != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-c.cfg.Ready:
		}
	}
	t := time.NewTicker(PolicyPoll)
	defer t.Stop()
	var cancel context.CancelFunc
	var events <-chan relaypool.Event
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	for {
		on := policy.ChannelEnabled(c.cfg.Policy(), policy.ChannelElectrumNostr, c.cfg.Now())
		switch {
		case on && cancel == nil:
			events, cancel = c.subscribe(ctx)
			c.log.Info("listening for Electrum's Send to cosigner", "pubkey", c.cfg.Wallet.OwnPubKey, "cosigners", len(c.cfg.Wallet.Cosigners))
		case !on && cancel != nil:
			cancel()
			cancel, events = nil, nil
			c.log.Info("the policy no longer lists the electrum_nostr channel: not listening")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case ev, ok := <-events:
			if !ok {
				events = nil // the pool closed; the next poll subscribes again
				if cancel != nil {
					cancel()
					cancel = nil
				}
				continue
			}
			c.Handle(ctx, ev.Event)
		}
	}
}

// subscribe opens the filter until the returned cancel is called or ctx ends.
func (c *Channel) subscribe(ctx context.Context) (<-chan relaypool.Event, context.CancelFunc) {
	sub, cancel := context.WithCancel(ctx)
	return c.cfg.Pool.Subscribe(sub, c.Filter(c.cfg.Now())), cancel
}

// drop counts and logs an event dropped for reason; nothing else changes.
func (c *Channel) drop(ev *nostr.Event, reason string, err error) {
	v, _ := c.drops.LoadOrStore(reason, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
	lvl := slog.LevelInfo
	if reason == "not_cosigner" || reason == "not_for_us" || reason == "rate" {
		lvl = slog.LevelDebug // cheap to send in bulk: not worth a log line each
	}
	c.log.Log(context.Background(), lvl, "event dropped", "reason", reason, "event", ev.ID, "author", ev.PubKey, "error", err)
}

// Drops returns how many events were dropped, by reason (not_for_us, not_cosigner, stale,
// oversized, rate, undecryptable, malformed, seen, disabled, store).
func (c *Channel) Drops() map[string]uint64 {
	out := map[string]uint64{}
	c.drops.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Handled returns how many events were handed to the policy.
func (c *Channel) Handled() uint64 { return c.handled.Load() }

// Handle takes one event (its id and signature checked by the relay pool): the plugin's
// receive filter (Check), the channel's rate limit, NIP-04, the plaintext (ParseMessage), the
// durable seen-id check (24 h), then psbtflow's sign_psbt as client policy.ChannelElectrumNostr
// under the event id; a signature goes back at once (answer), a hold later (Respond), a
// refusal nowhere (Electrum has no error message; psbtflow audited it). Every drop is counted
// and logged and writes nothing.
//
// Why a signature is never given twice for one event, nor beyond the policy: psbtflow decides a
// (client, request id) once and answers a repeat from its store, and the request id is the
// event id (a hash of the signed event); the seen record only keeps a replayed event from
// sending the stored answer out again, and it outlives the 24 hours in which Check lets an
// event in (a record is pruned only after KeepDelay, and never while its request is held).
func (c *Channel) Handle(ctx context.Context, ev *nostr.Event) {
	now := c.cfg.Now()
	if err := Check(ev, c.cfg.Wallet, now); err != nil {
		reason := map[error]string{ErrNotForUs: "not_for_us", ErrNotCosigner: "not_cosigner", ErrStale: "stale", ErrOversized: "oversized"}[err]
		c.drop(ev, reason, err)
		return
	}
	if !policy.ChannelEnabled(c.cfg.Policy(), policy.ChannelElectrumNostr, now) {
		c.drop(ev, "disabled", nil)
		return
	}
	if !c.lim.AllowN(now, 1) {
		c.drop(ev, "rate", nil)
		return
	}
	pt, err := Decrypt(ev.Content, ev.PubKey, c.cfg.Wallet.OwnSecret)
	if err != nil {
		c.drop(ev, "undecryptable", err)
		return
	}
	msg, err := ParseMessage(pt)
	if err != nil {
		c.drop(ev, "malformed", err)
		return
	}
	first, err := c.cfg.Records.FirstSeenElectrumNostr(ctx, store.ElectrumNostrEvent{EventID: ev.ID, Sender: ev.PubKey, Label: msg.Label, SeenAt: now}, KeepDelay)
	if err != nil {
		c.drop(ev, "store", err)
		return
	}
	if !first {
		c.drop(ev, "seen", nil)
		return
	}
	c.handled.Add(1)
	res, err := c.cfg.Signer.SignPSBT(ctx, nip46.Call{Client: policy.ChannelElectrumNostr, ID: ev.ID, Method: nip46.MethodSignPSBT, Params: []string{msg.TX}})
	if url, reason, held := psbtflow.Held(err); held {
		if perr := c.cfg.Records.SetElectrumNostrPending(ctx, ev.ID, true); perr != nil {
			c.log.Error("held request: keeping its sender", "event", ev.ID, "error", perr)
		}
		c.log.Info("Electrum request held", "event", ev.ID, "from", ev.PubKey, "reason", reason, "url", url)
		return
	}
	if _, transient, refused := psbtflow.Refused(err); err != nil && (!refused || transient) {
		// Not decided (not synced yet, a passing failure): forget the event so that it is
		// taken in again when a relay delivers it again (a re-subscription, a restart).
		if ferr := c.cfg.Records.ForgetElectrumNostr(ctx, ev.ID); ferr != nil {
			c.log.Error("forgetting an undecided event", "event", ev.ID, "error", ferr)
		}
		c.log.Warn("Electrum request not decided; it is taken in again when delivered again", "event", ev.ID, "error", err)
		return
	}
	if err != nil {
		c.log.Warn("Electrum request refused (Electrum is told nothing)", "event", ev.ID, "from", ev.PubKey, "error", err)
		return
	}
	if err := c.answer(ctx, ev.PubKey, res, msg.Label); err != nil {
		c.log.Error("answer not published", "event", ev.ID, "error", err)
	}
}

// Respond delivers the late answer of a held request (psbtflow.Responder): a signed PSBT goes
// to its sender (and, with ReplyToAll, every other co-signer); a refusal is logged only. It
// returns an error only when a signed answer reached no relay (psbtflow tries again).
func (c *Channel) Respond(ctx context.Context, client, requestID, result string, answerErr error) error {
	ev, ok, err := c.cfg.Records.ElectrumNostrEventByID(ctx, requestID)
	if err != nil {
		return err
	}
	if !ok {
		c.log.Warn("held request ended but its event is no longer recorded: no answer", "event", requestID)
		return nil
	}
	if answerErr != nil {
		c.log.Info("held Electrum request refused (Electrum is told nothing)", "event", requestID, "error", answerErr)
	} else if err := c.answer(ctx, ev.Sender, result, ev.Label); err != nil {
		return err
	} else {
		c.log.Info("held Electrum request answered", "event", requestID, "to", ev.Sender)
	}
	return c.cfg.Records.SetElectrumNostrPending(ctx, requestID, false)
}

// answer sends the signed PSBT to the sender (and every other co-signer with ReplyToAll), one
// event each, as the plugin's send_direct_messages does. An answer longer than Electrum's
// relay message limit is still sent, with a warning: Electrum will not read it.
func (c *Channel) answer(ctx context.Context, to, psbtText, label string) error {
	recipients := []string{to}
	if c.cfg.ReplyToAll {
		for _, co := range c.cfg.Wallet.Cosigners {
			if co.PubKey != to {
				recipients = append(recipients, co.PubKey)
			}
		}
	}
	var errs []error
	for _, pk := range recipients {
		ev, err := c.Event(pk, Message{TX: psbtText, Label: label})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n := RelayMessageLen(&ev, ""); n > MaxRelayMessage {
			c.log.Warn("answer is longer than Electrum reads (64,000 characters): it will not arrive", "chars", n)
		}
		if n, err := relaypool.Published(c.cfg.Pool.Publish(ctx, ev)); n == 0 {
			errs = append(errs, fmt.Errorf("answer to %s: no relay accepted it: %v", pk, err))
			continue
		}
		c.log.Info("answer sent", "to", pk, "event", ev.ID)
	}
	return errors.Join(errs...)
}

// Event makes the signed kind-4 event carrying m to recipient: NIP-04 content, tags p and
// expiration (Tags), created_at now, signed with the channel's own key.
func (c *Channel) Event(recipient string, m Message) (nostr.Event, error) {
	content, err := Encrypt(m.Encode(), recipient, c.cfg.Wallet.OwnSecret)
	if err != nil {
		return nostr.Event{}, err
	}
	now := c.cfg.Now()
	ev := nostr.Event{Kind: Kind, CreatedAt: nostr.Timestamp(now.Unix()), Tags: Tags(recipient, now), Content: content}
	if err := ev.Sign(c.cfg.Wallet.OwnSecret); err != nil {
		return nostr.Event{}, err
	}
	return ev, nil
}
