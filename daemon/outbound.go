package daemon

import (
	"log/slog"
	"sync"
	"time"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/signer/cosign"
)

// coordinators keeps one cosign.Coordinator per automation timeout (the interval after which
// an unanswered sign_psbt is sent again), all with this co-signer's Nostr identity key as the
// NIP-46 client key (contract6.md: the other co-signers' policies list its npub).
type coordinators struct {
	sk   string
	desc *descriptor.Descriptor
	log  *slog.Logger

	mu sync.Mutex
	m  map[time.Duration]*cosign.Coordinator
}

// For returns the Coordinator for timeout (0: the Coordinator's default), made on first use.
func (c *coordinators) For(timeout time.Duration) outbound.CosignerAsker {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[time.Duration]*cosign.Coordinator{}
	}
	co, ok := c.m[timeout]
	if !ok {
		co = cosign.NewCoordinator(c.sk, cosign.CoordinatorOptions{Timeout: timeout, Descriptor: c.desc, Logger: c.log})
		c.m[timeout] = co
	}
	return co
}

// Close closes every Coordinator (after the engine stopped).
func (c *coordinators) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, co := range c.m {
		co.Close()
	}
	c.m = nil
}
