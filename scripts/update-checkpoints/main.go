// Command update-checkpoints refreshes the header checkpoints chainwatch ships
// (chainwatch/checkpoints/<network>.json, the format of the Electrum wallet's
// electrum/chains/<net>/checkpoints.json: one [hash of the period's last block, target of the
// next period] pair per whole 2016-block period; the target is 0 on test networks, as in
// Electrum). It is run by hand before a release, never by the tests:
//
//	go run ./scripts/update-checkpoints -network mainnet -electrum ssl://electrum.example.org:50002
//	go run ./scripts/update-checkpoints -network signet -rpc http://user:pass@127.0.0.1:38332
//
// With -electrum it downloads every header from genesis (blockchain.block.headers, 2016 a call)
// and checks the whole chain with chainwatch's HeaderChain (links, proof of work, difficulty
// rules, BIP-94 on testnet4) before it writes anything; use a server you trust and compare the
// result with a second one. With -rpc it asks your own node (getblockhash, getblockheader) for
// two headers per period and trusts it. Periods whose last block is less than -margin blocks
// below the tip are left out. The old file's entries must be unchanged (a prefix of the new
// list), or it stops: a changed checkpoint means a reorg far below the tip or a lying source.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/netparams"
)

const interval = chainwatch.RetargetInterval

func main() {
	network := flag.String("network", "", "mainnet, testnet4 or signet")
	server := flag.String("electrum", "", "Electrum server, ssl://host:port (or tcp://)")
	pin := flag.String("pin", "", "SHA-256 fingerprint of the ssl:// server's certificate (default: trust it for this run)")
	rpc := flag.String("rpc", "", "bitcoind RPC URL with credentials, http://user:pass@host:port")
	margin := flag.Int("margin", 100, "leave out periods whose last block is fewer than this many blocks below the tip")
	out := flag.String("out", "", "file to write (default chainwatch/checkpoints/<network>.json)")
	flag.Parse()
	if err := run(*network, *server, *pin, *rpc, int32(*margin), *out); err != nil {
		fmt.Fprintln(os.Stderr, "update-checkpoints:", err)
		os.Exit(1)
	}
}

type entry [2]any // [hash hex, target integer]

func run(network, server, pin, rpc string, margin int32, out string) error {
	params, err := netparams.ByName(network)
	if err != nil {
		return err
	}
	if chainwatch.BuiltinCheckpoints(params) == nil {
		return fmt.Errorf("no checkpoint file is shipped for %s", params.Name)
	}
	if (server == "") == (rpc == "") {
		return errors.New("give one source: -electrum URL or -rpc URL")
	}
	if out == "" {
		out = filepath.Join("chainwatch", "checkpoints", network+".json")
	}
	ctx := context.Background()
	var list []entry
	if server != "" {
		list, err = fromElectrum(ctx, params, server, pin, margin)
	} else {
		list, err = fromRPC(ctx, params, rpc, margin)
	}
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(out); err == nil {
		prev, err := chainwatch.ParseCheckpoints(old)
		if err != nil {
			return fmt.Errorf("%s: %w", out, err)
		}
		if len(prev.List) > len(list) {
			return fmt.Errorf("%s has %d periods, the source only %d", out, len(prev.List), len(list))
		}
		for i, cp := range prev.List {
			if cp.Hash.String() != list[i][0] {
				return fmt.Errorf("period %d: %s holds %s, the source says %s (a reorg below the tip or a lying source)", i, out, cp.Hash, list[i][0])
			}
		}
	}
	b, err := json.MarshalIndent(list, "", "    ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d periods, last checkpoint at height %d\n", out, len(list), int32(len(list))*interval-1)
	return nil
}

// target returns the target of the period that starts with hdr (0 on test networks, as
// Electrum stores it).
func target(params *chaincfg.Params, bits uint32) *big.Int {
	if params.ReduceMinDifficulty || params.Net == chaincfg.SigNetParams.Net {
		return new(big.Int)
	}
	return blockchain.CompactToBig(bits)
}

func fromElectrum(ctx context.Context, params *chaincfg.Params, server, pin string, margin int32) ([]entry, error) {
	opts := electrum.Options{ClientName: "cosigner-update-checkpoints", RequestTimeout: 2 * time.Minute, MaxMessageSize: 4 << 20}
	addr, err := electrum.ParseServer(server)
	if err != nil {
		return nil, err
	}
	if pin != "" {
		opts.TLS.Fingerprints = map[string]string{addr.Addr: pin}
	} else {
		opts.TLS.Pins = &electrum.MemoryPinStore{}
	}
	c, err := electrum.Dial(ctx, server, opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var tip struct {
		Height int32 `json:"height"`
	}
	if err := c.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
		return nil, err
	}
	chain := chainwatch.NewHeaderChain(params, 0)
	var list []entry
	// Period p is fetched and checked; then period p-1's entry can be written (its target is
	// the bits of period p's first block).
	for p := int32(0); p*interval <= tip.Height && p*interval-1 <= tip.Height-margin; p++ {
		from := p * interval
		for from < (p+1)*interval && from <= tip.Height {
			var res struct {
				Count   int      `json:"count"`
				Hex     string   `json:"hex"`
				Headers []string `json:"headers"`
			}
			if err := c.Call(ctx, "blockchain.block.headers", []any{from, (p+1)*interval - from}, &res); err != nil {
				return nil, err
			}
			raw := res.Hex
			if raw == "" {
				raw = strings.Join(res.Headers, "")
			}
			b, err := hex.DecodeString(raw)
			if err != nil || len(b)%80 != 0 || len(b) == 0 {
				return nil, fmt.Errorf("blockchain.block.headers %d: bad answer", from)
			}
			hs := make([]wire.BlockHeader, len(b)/80)
			for i := range hs {
				if err := hs[i].Deserialize(bytes.NewReader(b[i*80 : (i+1)*80])); err != nil {
					return nil, err
				}
			}
			start := from
			if from == 0 {
				if hs[0].BlockHash() != *params.GenesisHash {
					return nil, fmt.Errorf("the server's genesis is not %s's", params.Name)
				}
				hs, start = hs[1:], 1
			}
			if _, err := chain.Connect(start, hs); err != nil {
				return nil, fmt.Errorf("the server's chain fails a check: %w", err)
			}
			from += int32(len(b) / 80)
		}
		if p == 0 {
			continue
		}
		end := p*interval - 1
		h, _ := chain.Hash(end)
		next, _ := chain.Header(end + 1)
		list = append(list, entry{h.String(), target(params, next.Bits)})
		if p%50 == 0 {
			fmt.Fprintf(os.Stderr, "checked to %d of %d\n", end, tip.Height)
		}
	}
	return list, nil
}

func fromRPC(ctx context.Context, params *chaincfg.Params, rpcURL string, margin int32) ([]entry, error) {
	u, err := url.Parse(rpcURL)
	if err != nil || u.User == nil {
		return nil, fmt.Errorf("-rpc: want http://user:pass@host:port")
	}
	call := func(method string, params []any, result any) error {
		body, _ := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		var r struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: HTTP %d: %w", method, resp.StatusCode, err)
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		return json.Unmarshal(r.Result, result)
	}
	var genesis string
	if err := call("getblockhash", []any{0}, &genesis); err != nil {
		return nil, err
	}
	if genesis != params.GenesisHash.String() {
		return nil, fmt.Errorf("the node's genesis %s is not %s's", genesis, params.Name)
	}
	var height int32
	if err := call("getblockcount", nil, &height); err != nil {
		return nil, err
	}
	var list []entry
	for end := int32(interval - 1); end <= height-margin && end+1 <= height; end += interval {
		var hash, next, hdrHex string
		if err := call("getblockhash", []any{end}, &hash); err != nil {
			return nil, err
		}
		if err := call("getblockhash", []any{end + 1}, &next); err != nil {
			return nil, err
		}
		if err := call("getblockheader", []any{next, false}, &hdrHex); err != nil {
			return nil, err
		}
		b, err := hex.DecodeString(hdrHex)
		var hdr wire.BlockHeader
		if err != nil || len(b) != 80 || hdr.Deserialize(bytes.NewReader(b)) != nil || hdr.PrevBlock.String() != hash {
			return nil, fmt.Errorf("getblockheader %s: bad answer", next)
		}
		list = append(list, entry{hash, target(params, hdr.Bits)})
	}
	return list, nil
}
