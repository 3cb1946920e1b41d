package policy

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
)

// ParseAmount reads an amount with its unit: "0.5 BTC", "50000 sat" (also "sats"), "1_000 sat".
// BTC amounts may have at most 8 decimals. A bare number is an error: the unit is required so
// that nobody confuses satoshis with bitcoin. The result is exact (no floating point).
func ParseAmount(s string) (btcutil.Amount, error) {
	fields := strings.Fields(strings.TrimSpace(s))
	if len(fields) != 2 {
		return 0, fmt.Errorf("amount %q needs a number and a unit, e.g. \"0.5 BTC\" or \"50000 sat\"", s)
	}
	num := strings.ReplaceAll(fields[0], "_", "")
	unit := strings.ToLower(fields[1])
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.ContainsAny(num, "eE/") {
		return 0, fmt.Errorf("amount %q: %q is not a decimal number", s, fields[0])
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("amount %q is negative", s)
	}
	switch unit {
	case "btc":
		r.Mul(r, big.NewRat(btcutil.SatoshiPerBitcoin, 1))
	case "sat", "sats":
	default:
		return 0, fmt.Errorf("amount %q: unit must be BTC or sat", s)
	}
	if !r.IsInt() {
		return 0, fmt.Errorf("amount %q is not a whole number of satoshis", s)
	}
	if r.Num().Cmp(big.NewInt(btcutil.MaxSatoshi)) > 0 {
		return 0, fmt.Errorf("amount %q is more than 21 million BTC", s)
	}
	return btcutil.Amount(r.Num().Int64()), nil
}
