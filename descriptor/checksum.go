package descriptor

import (
	"fmt"
	"strings"
)

// The descriptor checksum of BIP-380 ("Checksum"): a BCH code over the
// descriptor's characters, written as 8 characters of the bech32 alphabet.

const (
	inputCharset    = "0123456789()[],'/*abcdefgh@:$%{}" + "IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~" + "ijklmnopqrstuvwxyzABCDEFGH`#\"\\ "
	checksumCharset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	checksumLen     = 8
)

var checksumGenerator = [5]uint64{0xf5dee51989, 0xa9fdca3312, 0x1bab10e32d, 0x3706b1677a, 0x644d626ffd}

// charsetIndex maps a byte to its position in inputCharset, or -1.
var charsetIndex = func() (t [256]int) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(inputCharset); i++ {
		t[inputCharset[i]] = i
	}
	return t
}()

func polymodStep(c uint64, v uint64) uint64 {
	top := c >> 35
	c = (c&0x7ffffffff)<<5 ^ v
	for i := 0; i < 5; i++ {
		if (top>>i)&1 == 1 {
			c ^= checksumGenerator[i]
		}
	}
	return c
}

// checkCharset returns the offset of the first byte outside the BIP-380
// character set, or -1.
func checkCharset(s string) int {
	for i := 0; i < len(s); i++ {
		if charsetIndex[s[i]] < 0 {
			return i
		}
	}
	return -1
}

// checksum computes the checksum of s, which must be within the character set.
func checksum(s string) string {
	c := uint64(1)
	cls, clsCount := 0, 0
	for i := 0; i < len(s); i++ {
		pos := charsetIndex[s[i]]
		// Each character contributes its position within its group of 32;
		// every three characters the three group numbers contribute one symbol.
		c = polymodStep(c, uint64(pos&31))
		cls = cls*3 + pos>>5
		clsCount++
		if clsCount == 3 {
			c = polymodStep(c, uint64(cls))
			cls, clsCount = 0, 0
		}
	}
	if clsCount > 0 {
		c = polymodStep(c, uint64(cls))
	}
	for i := 0; i < checksumLen; i++ {
		c = polymodStep(c, 0)
	}
	c ^= 1
	var out [checksumLen]byte
	for i := 0; i < checksumLen; i++ {
		out[i] = checksumCharset[(c>>(5*(7-i)))&31]
	}
	return string(out[:])
}

// Checksum returns the 8-character BIP-380 checksum of desc, a descriptor
// without its "#checksum" suffix. It fails with ErrSyntax (in a *ParseError)
// if desc contains '#' or a character outside the BIP-380 character set.
func Checksum(desc string) (string, error) {
	if i := strings.IndexByte(desc, '#'); i >= 0 {
		return "", errAt(i, ErrSyntax, "'#' in descriptor: pass the descriptor without its checksum")
	}
	if i := checkCharset(desc); i >= 0 {
		return "", errAt(i, ErrSyntax, "character %s is not allowed in a descriptor", quoteChar(desc, i))
	}
	return checksum(desc), nil
}

// splitChecksum separates "SCRIPT#CHECKSUM" into its parts and verifies the
// checksum when present. sum is "" when there is none.
func splitChecksum(s string) (payload, sum string, err error) {
	payload = s
	if i := strings.IndexByte(s, '#'); i >= 0 {
		payload, sum = s[:i], s[i+1:]
		if j := strings.IndexByte(sum, '#'); j >= 0 {
			return "", "", errAt(i+1+j, ErrSyntax, "more than one '#'")
		}
		if len(sum) != checksumLen {
			return "", "", errAt(i+1, ErrChecksum, "checksum must be %d characters, got %d", checksumLen, len(sum))
		}
		for j := 0; j < len(sum); j++ {
			if strings.IndexByte(checksumCharset, sum[j]) < 0 {
				return "", "", errAt(i+1+j, ErrChecksum, "character %s is not a checksum character", quoteChar(sum, j))
			}
		}
	}
	if i := checkCharset(payload); i >= 0 {
		return "", "", errAt(i, ErrSyntax, "character %s is not allowed in a descriptor", quoteChar(payload, i))
	}
	if sum != "" && checksum(payload) != sum {
		return "", "", errAt(len(payload)+1, ErrChecksum, "checksum %q does not match the descriptor (a typo in either?)", sum)
	}
	return payload, sum, nil
}

// quoteChar quotes the (possibly multi-byte) character starting at s[i].
func quoteChar(s string, i int) string {
	for _, r := range s[i:] {
		return fmt.Sprintf("%q", r)
	}
	return `""`
}
