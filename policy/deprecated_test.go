package policy

import (
	"strings"
	"testing"
)

// limits.release_after still parses (files written for the earlier ledger keep loading) but is
// reported as ignored, and changing it is not a loosening (it has no effect).
func TestReleaseAfterIsIgnoredWithAWarning(t *testing.T) {
	base := "version: 1\nclients: [{name: c, pubkey: " + strings.Repeat("ab", 32) + "}]\nlimits:\n  max_per_tx: 1 BTC\n"
	with, err := Parse("p.yaml", []byte(base+"  release_after: 72h\n"))
	if err != nil {
		t.Fatalf("a policy with release_after no longer loads: %v", err)
	}
	if d := with.Deprecations(); len(d) != 1 || !strings.Contains(d[0], "release_after (3d) is ignored") {
		t.Fatalf("deprecations = %q", d)
	}
	without, err := Parse("p.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if d := without.Deprecations(); len(d) != 0 {
		t.Fatalf("deprecations without the key = %q", d)
	}
	shorter, _ := Parse("p.yaml", []byte(base+"  release_after: 1h\n"))
	if l := Loosenings(with, shorter); len(l) != 0 {
		t.Fatalf("shortening an ignored key counts as loosening: %q", l)
	}
	if _, err := Parse("p.yaml", []byte(base+"  release_after: soon\n")); err == nil {
		t.Fatal("a malformed release_after is accepted")
	}
}
