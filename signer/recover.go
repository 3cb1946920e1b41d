package signer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
)

// safeDispatch is dispatch that survives a panicking method handler: the panic value and the
// stack go to the log (at error level), and the client is answered "internal: …" naming only
// the method — never the panic value, which may carry request data, nor the stack.
func (s *RemoteSigner) safeDispatch(ctx context.Context, req nip46.Call, log *slog.Logger) (result string, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("method handler panicked; answered internal", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = "", nip46.Errorf(nip46.CodeInternal, "the %s handler failed unexpectedly; the request was not completed", truncate(req.Method, 64))
		}
	}()
	return s.dispatch(ctx, req)
}

// recoverEvent ends the goroutine of one event quietly after a panic outside a method handler
// (decryption, parsing, answering): the panic and the stack go to the log and the daemon stays
// up. Deferred by the goroutines that call handleEvent.
func (s *RemoteSigner) recoverEvent(ev *nostr.Event) {
	if p := recover(); p != nil {
		s.log.Error("panic while handling an event; dropped", "event", ev.ID, "client", ev.PubKey,
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	}
}
