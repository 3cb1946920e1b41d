package psbtflow

import (
	"errors"
	"fmt"
	"testing"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
)

// TestWireError: every psbt refusal code has its NIP-46 code, the detail is the message
// unchanged (found through wrapping), a MethodError passes through, and anything else is
// internal without its text.
func TestWireError(t *testing.T) {
	for code, want := range map[psbt.RefusalCode]string{
		psbt.InvalidPSBT: "invalid_psbt", psbt.TooLarge: "invalid_psbt", psbt.TooManyInputs: "unsafe_psbt",
		psbt.TooManyOutputs: "unsafe_psbt", psbt.NotOurWallet: "not_our_wallet", psbt.UnsafePSBT: "unsafe_psbt",
	} {
		err := fmt.Errorf("context: %w", &psbt.Refusal{Code: code, Detail: "sighash: input 0 asks for 0x2"})
		if got := WireError(err).Error(); got != want+": sighash: input 0 asks for 0x2" {
			t.Errorf("%s: %q", code, got)
		}
	}
	me := nip46.Errorf(nip46.CodePolicyDenied, "max_per_tx: over")
	if got := WireError(me); got != me {
		t.Errorf("MethodError became %v", got)
	}
	if got := WireError(errors.New("disk on fire")); got.Code != nip46.CodeInternal || got.Message == "disk on fire" {
		t.Errorf("plain error = %v", got)
	}
}
