package electrum

// protocol.go — the differences between the protocol versions the client negotiates (1.4, as
// electrs 0.12 and ElectrumX 1.18 speak it, and 1.6, as Fulcrum ≥ 2.1 does), per
// spesmilo/electrum-protocol docs/protocol-changes.rst, "Version 1.6":
//
//   - server.version must be the first message (Dial always sends it first, once);
//   - blockchain.block.headers answers a "headers" list instead of one concatenated "hex"
//     string (BlockHeaders reads either);
//   - blockchain.estimatefee takes an optional mode (EstimateFeeMode sends it to 1.6 servers
//     only: a 1.4 server such as electrs refuses a second parameter);
//   - blockchain.relayfee is removed; mempool.get_info's minrelaytxfee replaces it (RelayFee
//     asks whichever the session's protocol has);
//   - mempool transactions of a script's history and status have a canonical order:
//     height 0 before -1, then by tx_hash (CanonicalMempoolOrder, ScriptStatus).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Protocol versions with behaviour of their own.
const (
	Protocol14 = "1.4"
	Protocol16 = "1.6"
)

// ProtocolAtLeast reports whether the negotiated protocol version is v or later ("1.6.1" is at
// least "1.6"). It is false when either does not parse.
func (c *Client) ProtocolAtLeast(v string) bool {
	have, ok1 := parseVersion(c.Protocol)
	want, ok2 := parseVersion(v)
	return ok1 && ok2 && compareVersions(have, want) >= 0
}

// headerSize is the size of a serialized block header (no AuxPoW on Bitcoin).
const headerSize = 80

// HeaderChunk is the answer of blockchain.block.headers: the raw 80-byte headers from the
// requested start height on, and the server's cap on headers per call (ElectrumX, electrs and
// Fulcrum answer at most 2016).
type HeaderChunk struct {
	Headers [][]byte
	Max     int
}

// ParseBlockHeaders decodes a blockchain.block.headers result of either shape: protocol 1.6's
// {"count", "headers": [hex, …], "max"} or 1.4's {"count", "hex": concatenated, "max"}. It
// checks that count matches the headers given, that each is 80 bytes of hex, that the server
// gave no more than requested, and, when both "hex" and "headers" are present, that they agree.
// Errors wrap ErrMalformedMessage.
func ParseBlockHeaders(raw json.RawMessage, requested int) (HeaderChunk, error) {
	var res struct {
		Count   *int      `json:"count"`
		Hex     *string   `json:"hex"`
		Headers *[]string `json:"headers"`
		Max     int       `json:"max"`
	}
	bad := func(format string, args ...any) (HeaderChunk, error) {
		return HeaderChunk{}, fmt.Errorf("electrum: blockchain.block.headers: %w: %s", ErrMalformedMessage, fmt.Sprintf(format, args...))
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return bad("%v in %s", err, truncate(raw))
	}
	if res.Count == nil || *res.Count < 0 {
		return bad("no count in %s", truncate(raw))
	}
	count := *res.Count
	if count > requested {
		return bad("%d headers for %d requested", count, requested)
	}
	var out [][]byte
	if res.Headers != nil {
		for i, h := range *res.Headers {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != headerSize {
				return bad("header %d is not %d bytes of hex", i, headerSize)
			}
			out = append(out, b)
		}
	}
	if res.Hex != nil {
		b, err := hex.DecodeString(*res.Hex)
		if err != nil || len(b)%headerSize != 0 {
			return bad("hex is not whole headers")
		}
		var fromHex [][]byte
		for i := 0; i < len(b); i += headerSize {
			fromHex = append(fromHex, b[i:i+headerSize])
		}
		if res.Headers != nil {
			if len(fromHex) != len(out) {
				return bad("hex and headers disagree")
			}
			for i := range out {
				if !bytesEqual(out[i], fromHex[i]) {
					return bad("hex and headers disagree at %d", i)
				}
			}
		}
		out = fromHex
	}
	if res.Headers == nil && res.Hex == nil {
		return bad("neither headers nor hex in %s", truncate(raw))
	}
	if len(out) != count {
		return bad("%d headers, count says %d", len(out), count)
	}
	return HeaderChunk{Headers: out, Max: res.Max}, nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// BlockHeaders asks blockchain.block.headers(start, count) and parses the answer in the shape
// of the session's protocol (see ParseBlockHeaders). Fewer headers than asked means the chain
// ends, or the server's Max was reached. Errors: ErrMalformedMessage, and what Call returns.
func (c *Client) BlockHeaders(ctx context.Context, start, count int) (HeaderChunk, error) {
	if start < 0 || count < 0 {
		return HeaderChunk{}, fmt.Errorf("electrum: blockchain.block.headers: %w: start %d count %d", ErrBadRequest, start, count)
	}
	var raw json.RawMessage
	if err := c.Call(ctx, "blockchain.block.headers", []any{start, count}, &raw); err != nil {
		return HeaderChunk{}, err
	}
	return ParseBlockHeaders(raw, count)
}

// FeeMode is the estimate mode of blockchain.estimatefee (protocol 1.6), passed to the node's
// estimatesmartfee as estimate_mode.
type FeeMode string

// Fee estimate modes (Bitcoin Core's estimate_mode values). FeeModeDefault sends none.
const (
	FeeModeDefault      FeeMode = ""
	FeeModeEconomical   FeeMode = "economical"
	FeeModeConservative FeeMode = "conservative"
)

// EstimateFeeMode is EstimateFee with an estimate mode, sent as blockchain.estimatefee's
// second parameter to servers speaking protocol 1.6 or later; to older servers (electrs 0.12,
// ElectrumX before 1.16 refuse the parameter) the mode is left out and the server's default
// applies. A mode other than the FeeMode constants gives the fallback with ErrBadRequest as
// the reason, without asking.
func (c *Client) EstimateFeeMode(ctx context.Context, blocks int, mode FeeMode, fallback, maxRate FeeRate) FeeEstimate {
	switch mode {
	case FeeModeDefault, FeeModeEconomical, FeeModeConservative:
	default:
		if fallback <= 0 {
			fallback = DefaultFallbackFeeRate
		}
		return FeeEstimate{Rate: max(fallback, MinFeeRate), Reason: fmt.Errorf("%w: fee estimate mode %q", ErrBadRequest, truncate([]byte(mode)))}
	}
	params := []any{blocks}
	if mode != FeeModeDefault && c.ProtocolAtLeast(Protocol16) {
		params = append(params, string(mode))
	}
	return c.estimateFee(ctx, params, fallback, maxRate)
}

// RelayFee returns the server's node's minimum relay feerate in sat/vB: mempool.get_info's
// minrelaytxfee on protocol 1.6 or later (blockchain.relayfee was removed), blockchain.relayfee
// before (both BTC per kvB). Errors: ErrImplausibleFee for an answer that is not a positive
// number up to DefaultMaxFeeRate; what Call returns.
func (c *Client) RelayFee(ctx context.Context) (FeeRate, error) {
	var btcPerKvB *float64
	if c.ProtocolAtLeast(Protocol16) {
		var info struct {
			MinRelayTxFee *float64 `json:"minrelaytxfee"`
		}
		if err := c.Call(ctx, "mempool.get_info", nil, &info); err != nil {
			return 0, err
		}
		btcPerKvB = info.MinRelayTxFee
	} else if err := c.Call(ctx, "blockchain.relayfee", nil, &btcPerKvB); err != nil {
		return 0, err
	}
	if btcPerKvB == nil || math.IsNaN(*btcPerKvB) || *btcPerKvB <= 0 || *btcPerKvB*1e5 > float64(DefaultMaxFeeRate) {
		return 0, fmt.Errorf("%w: relay fee %v BTC/kvB", ErrImplausibleFee, deref(btcPerKvB))
	}
	return FeeRate(*btcPerKvB * 1e5), nil
}

func deref(p *float64) any {
	if p == nil {
		return "missing"
	}
	return *p
}

// HistoryEntry is one item of blockchain.scripthash.get_history or get_mempool: a transaction
// hash (display hex) and its height (> 0 confirmed; 0 in the mempool with confirmed inputs; -1
// in the mempool with an unconfirmed input).
type HistoryEntry struct {
	TxHash string `json:"tx_hash"`
	Height int64  `json:"height"`
}

// CanonicalMempoolOrder sorts the mempool entries (height ≤ 0) of history in place into protocol
// 1.6's order — height 0 before -1, then by tx_hash — after the confirmed ones, which keep their
// order (by height, then position in block, as the server lists them).
func CanonicalMempoolOrder(history []HistoryEntry) {
	sort.SliceStable(history, func(i, j int) bool {
		a, b := history[i], history[j]
		ca, cb := a.Height > 0, b.Height > 0
		switch {
		case ca && cb:
			return a.Height < b.Height
		case ca != cb:
			return ca
		case a.Height != b.Height:
			return a.Height > b.Height
		}
		return strings.ToLower(a.TxHash) < strings.ToLower(b.TxHash)
	})
}

// IsCanonical reports whether history is in protocol 1.6's order: confirmed entries by
// non-decreasing height, then the mempool ones as CanonicalMempoolOrder sorts them. A 1.6
// server must answer get_history in this order; a 1.4 server may order its mempool entries
// any way (the status is then the hash of its own order).
func IsCanonical(history []HistoryEntry) bool {
	sorted := append([]HistoryEntry(nil), history...)
	CanonicalMempoolOrder(sorted)
	for i := range sorted {
		if sorted[i] != history[i] {
			return false
		}
	}
	return true
}

// ScriptStatus is the status of a script's history in the order given (Electrum protocol,
// protocol-basics "Status"): the hex SHA-256 of the concatenated "tx_hash:height:" strings, or
// "" (the protocol's null) for an empty history.
func ScriptStatus(history []HistoryEntry) string {
	if len(history) == 0 {
		return ""
	}
	h := sha256.New()
	for _, e := range history {
		h.Write([]byte(e.TxHash + ":" + strconv.FormatInt(e.Height, 10) + ":"))
	}
	return hex.EncodeToString(h.Sum(nil))
}
