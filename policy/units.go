package policy

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// FeeRate is a feerate in satoshis per virtual byte (sat/vB, BIP-141 vsize).
type FeeRate float64

// ParseFeeRate reads a feerate with its unit: "25 sat/vB" (also "sat/vb", "sats/vB").
// Errors name the expected form.
func ParseFeeRate(s string) (FeeRate, error) {
	fields := strings.Fields(strings.TrimSpace(s))
	if len(fields) != 2 || (strings.ToLower(fields[1]) != "sat/vb" && strings.ToLower(fields[1]) != "sats/vb") {
		return 0, fmt.Errorf("feerate %q needs a number and the unit sat/vB, e.g. \"50 sat/vB\"", s)
	}
	r, ok := new(big.Rat).SetString(strings.ReplaceAll(fields[0], "_", ""))
	if !ok || strings.ContainsAny(fields[0], "eE/") || r.Sign() < 0 {
		return 0, fmt.Errorf("feerate %q: %q is not a non-negative decimal number", s, fields[0])
	}
	f, _ := r.Float64()
	if f > 1e8 {
		return 0, fmt.Errorf("feerate %q is absurdly high", s)
	}
	return FeeRate(f), nil
}

// Share is a fraction of an amount in parts per million (1% = 10_000 ppm), exact.
type Share int64

// String prints the share as a percentage.
func (s Share) String() string {
	return strconv.FormatFloat(float64(s)/10_000, 'f', -1, 64) + "%"
}

// ParseShare reads a percentage such as "2%" or "0.5 %" (at most 4 decimals), 0%–100%.
func ParseShare(s string) (Share, error) {
	t := strings.TrimSpace(s)
	if !strings.HasSuffix(t, "%") {
		return 0, fmt.Errorf("share %q needs a percent sign, e.g. \"2%%\"", s)
	}
	num := strings.TrimSpace(strings.TrimSuffix(t, "%"))
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.ContainsAny(num, "eE/") || r.Sign() < 0 {
		return 0, fmt.Errorf("share %q: %q is not a non-negative decimal number", s, num)
	}
	r.Mul(r, big.NewRat(10_000, 1))
	if !r.IsInt() {
		return 0, fmt.Errorf("share %q has more than 4 decimals", s)
	}
	if r.Num().Cmp(big.NewInt(1_000_000)) > 0 {
		return 0, fmt.Errorf("share %q is more than 100%%", s)
	}
	return Share(r.Num().Int64()), nil
}

// ParseDuration reads a Go duration ("90m", "1h30m") or a whole number of days or weeks ("7d",
// "2w"). Zero and negative durations are errors.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var d time.Duration
	if n, unit := strings.TrimRight(t, "dw"), strings.TrimLeft(t, "0123456789"); (unit == "d" || unit == "w") && n != "" && len(n)+1 == len(t) {
		v, err := strconv.ParseInt(n, 10, 32)
		if err != nil || v > 100*366 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		d = time.Duration(v) * 24 * time.Hour
		if unit == "w" {
			d *= 7
		}
	} else {
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return 0, fmt.Errorf("duration %q: use a Go duration (90m, 24h) or days/weeks (7d, 2w)", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

// FormatDuration prints d in whole days, hours or minutes when it is one (7d, 1h, 90m), else as a
// Go duration.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// ClockTime is a time of day in minutes after midnight (0–1439).
type ClockTime int

// ParseClockTime reads "HH:MM" (24-hour clock).
func ParseClockTime(s string) (ClockTime, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("time of day %q must be HH:MM (24-hour clock)", s)
	}
	return ClockTime(t.Hour()*60 + t.Minute()), nil
}

func (c ClockTime) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

// Rate is a count per window, written "20/1h" or "100/1d".
type Rate struct {
	Count int
	Per   time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.Count, FormatDuration(r.Per)) }

// ParseRate reads "N/DURATION", e.g. "20/1h".
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q must be COUNT/DURATION, e.g. \"20/1h\"", s)
	}
	c, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || c < 1 || c > 1_000_000 {
		return Rate{}, fmt.Errorf("rate %q: count must be a whole number from 1 to 1000000", s)
	}
	d, err := ParseDuration(strings.TrimSpace(per))
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: %v", s, err)
	}
	return Rate{Count: c, Per: d}, nil
}
