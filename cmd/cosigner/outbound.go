package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
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

// electrumPrevTx fetches previous transactions (blockchain.transaction.get, Electrum protocol)
// for the non_witness_utxo the builder adds to segwit v0 inputs, so that hardware co-signers
// accept the PSBT (bitcoin#19215). It keeps one connection of its own to the configured servers
// (tried in order), dialed on first use and again after a failure. The builder checks that
// the transaction hashes to the txid asked for.
type electrumPrevTx struct {
	servers []string
	opts    electrum.Options

	mu sync.Mutex
	c  *electrum.Client
}

func (e *electrumPrevTx) PrevTx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for attempt := 0; attempt < 2; attempt++ {
		if e.c == nil {
			for _, s := range e.servers {
				c, err := electrum.Dial(ctx, s, e.opts)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				e.c = c
				break
			}
			if e.c == nil {
				return nil, fmt.Errorf("previous transaction %s: %w", txid, errors.Join(errs...))
			}
		}
		var raw string
		err := e.c.Call(ctx, "blockchain.transaction.get", []any{txid.String()}, &raw)
		if err == nil {
			b, err := hex.DecodeString(raw)
			if err != nil {
				return nil, fmt.Errorf("previous transaction %s: not hex: %w", txid, err)
			}
			var tx wire.MsgTx
			if err := tx.Deserialize(bytes.NewReader(b)); err != nil {
				return nil, fmt.Errorf("previous transaction %s: %w", txid, err)
			}
			return &tx, nil
		}
		errs = append(errs, err)
		var se *electrum.ServerError
		if errors.As(err, &se) || ctx.Err() != nil {
			break // the server answered (unknown transaction…): no point in another connection
		}
		e.c.Close()
		e.c = nil
	}
	return nil, fmt.Errorf("previous transaction %s: %w", txid, errors.Join(errs...))
}

// Close closes the connection.
func (e *electrumPrevTx) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c != nil {
		e.c.Close()
		e.c = nil
	}
}
