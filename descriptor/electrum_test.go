package descriptor

import (
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
)

// TestElectrumWallet: a sortedmulti P2WSH wallet becomes Electrum's "2of3" file with one
// watch-only SLIP-132 keystore per key (Vpub on test networks, the key's own origin), and what
// Electrum cannot reproduce is refused with the reason.
func TestElectrumWallet(t *testing.T) {
	_, k := threeKeys(t)
	d := mustParse(t, "wsh(sortedmulti(2,"+k[0]+"/<0;1>/*,"+k[1]+"/<0;1>/*,"+k[2]+"/<0;1>/*))", regtest)
	w, err := ElectrumWallet(d)
	if err != nil {
		t.Fatal(err)
	}
	if w["wallet_type"] != "2of3" {
		t.Fatalf("wallet_type %v, want 2of3", w["wallet_type"])
	}
	for i, key := range d.Keys() {
		ks, ok := w["x"+string(rune('1'+i))+"/"].(ElectrumKeystore)
		if !ok {
			t.Fatalf("keystore x%d/ missing: %v", i+1, w)
		}
		if !strings.HasPrefix(ks.XPub, "Vpub") || ks.Derivation != "m/48h/1h/0h/2h" || ks.XPrv != nil {
			t.Fatalf("keystore x%d/: %+v", i+1, ks)
		}
		// The SLIP-132 string is the same key under other version bytes.
		back, err := hdkeychain.NewKeyFromString(ks.XPub)
		if err != nil {
			t.Fatal(err)
		}
		if back.String() == key.XPub.String() {
			t.Fatal("SLIP-132 string kept the tpub version bytes")
		}
		a, _ := back.ECPubKey()
		b, _ := key.XPub.ECPubKey()
		if !a.IsEqual(b) || back.Depth() != key.XPub.Depth() || back.ParentFingerprint() != key.XPub.ParentFingerprint() || back.ChildIndex() != key.XPub.ChildIndex() {
			t.Fatalf("keystore x%d/ is not the descriptor's key", i+1)
		}
	}
	for _, c := range []struct{ desc, want string }{
		{"wsh(multi(2," + k[0] + "/<0;1>/*," + k[1] + "/<0;1>/*," + k[2] + "/<0;1>/*))", "sortedmulti"},
		{"wsh(sortedmulti(2," + k[0] + "/0/*," + k[1] + "/0/*," + k[2] + "/0/*))", "receive and change"},
		{"wsh(sortedmulti(2," + k[0][strings.Index(k[0], "]")+1:] + "/<0;1>/*," + k[1] + "/<0;1>/*," + k[2] + "/<0;1>/*))", "key origin"},
	} {
		if _, err := ElectrumWallet(mustParse(t, c.desc, regtest)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one naming %q", c.desc, err, c.want)
		}
	}
}
