package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/custodyagents/cosigner/chainwatch"
)

// printStatus writes the wallet view for people: tip, balances, UTXOs.
func printStatus(out io.Writer, st chainwatch.Status) {
	if !st.HasTip {
		fmt.Fprintln(out, "No chain data yet: `cosigner run` has not synced this wallet.")
		return
	}
	fmt.Fprintf(out, "tip          %d %s\n", st.Tip.Height, st.Tip.Hash)
	fmt.Fprintf(out, "confirmed    %s\n", st.Confirmed)
	fmt.Fprintf(out, "unconfirmed  %s\n", st.Unconfirmed)
	fmt.Fprintf(out, "scripts      %d watched, %d used\n", st.ScriptsTracked, st.ScriptsUsed)
	utxos := append([]chainwatch.UTXO(nil), st.UTXOs...)
	sort.Slice(utxos, func(i, j int) bool { return utxos[i].Height < utxos[j].Height })
	fmt.Fprintf(out, "UTXOs        %d\n", len(utxos))
	for _, u := range utxos {
		branch := "receive"
		if u.Branch == 1 {
			branch = "change"
		}
		fmt.Fprintf(out, "  %s  %16s  %s #%d  %d conf\n", u.OutPoint, u.Value, branch, u.Index, u.Confirmations(st.Tip))
	}
}
