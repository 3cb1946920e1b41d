package descriptor

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

// Checksum vectors of BIP-380, "Test Vectors":
// https://github.com/bitcoin/bips/blob/master/bip-0380.mediawiki#test-vectors
// raw() is outside this package's scope, so the vectors that pass the
// checksum stage end in ErrUnsupported; those that fail it never reach the
// expression parser.
func TestChecksumBIP380(t *testing.T) {
	sum, err := Checksum("raw(deadbeef)")
	if err != nil || sum != "89f8spxm" {
		t.Fatalf("Checksum(raw(deadbeef)) = %q, %v; want 89f8spxm", sum, err)
	}

	tests := []struct {
		name, in string
		want     error
	}{
		{"valid checksum", "raw(deadbeef)#89f8spxm", ErrUnsupported},
		{"no checksum", "raw(deadbeef)", ErrUnsupported},
		{"missing checksum", "raw(deadbeef)#", ErrChecksum},
		{"too long checksum", "raw(deadbeef)#89f8spxmx", ErrChecksum},
		{"too short checksum", "raw(deadbeef)#89f8spx", ErrChecksum},
		{"error in payload", "raw(deedbeef)#89f8spxm", ErrChecksum},
		{"error in checksum", "raw(deedbeef)##9f8spxm", ErrSyntax}, // two '#'
		{"invalid characters in payload", "raw(Ü)#00000000", ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in, &chaincfg.MainNetParams)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) error = %v, want %v", tt.in, err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Col < 1 || pe.Col > len(tt.in)+1 {
				t.Fatalf("Parse(%q) error %v has no usable column", tt.in, err)
			}
		})
	}

	if _, err := Parse("raw(deadbeef)", &chaincfg.MainNetParams, RequireChecksum()); !errors.Is(err, ErrMissingChecksum) {
		t.Fatalf("RequireChecksum without checksum: %v, want ErrMissingChecksum", err)
	}
	if _, err := Parse("raw(deadbeef)#89f8spxm", &chaincfg.MainNetParams, RequireChecksum()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("RequireChecksum with checksum: %v, want ErrUnsupported (checksum accepted)", err)
	}
}

func TestChecksumRejects(t *testing.T) {
	for _, in := range []string{"raw(deadbeef)#89f8spxm", "wsh(Ü)"} {
		if _, err := Checksum(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Checksum(%q) error = %v, want ErrSyntax", in, err)
		}
	}
}

// Every single-character substitution in a checksummed descriptor is
// detected (BIP-380: "Any 1 symbol error is always detected").
func TestChecksumDetectsSubstitutions(t *testing.T) {
	payload := "wsh(sortedmulti(2,[deadbeef/48h/1h/0h/2h]tpubX/<0;1>/*))"
	sum := checksum(payload)
	full := payload + "#" + sum
	for i := 0; i < len(full); i++ {
		if full[i] == '#' {
			continue
		}
		for _, c := range []byte("0aZ(h/") {
			if c == full[i] {
				continue
			}
			mut := []byte(full)
			mut[i] = c
			if _, _, err := splitChecksum(string(mut)); err == nil {
				t.Fatalf("substitution at %d (%q→%q) not detected", i, full[i], c)
			}
		}
	}
}
