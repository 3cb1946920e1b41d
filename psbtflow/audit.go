package psbtflow

import (
	"cmp"
	"encoding/json"
	"slices"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// AuditSummary is what the audit log keeps of a request's analysis: its totals, counts and the
// largest destinations, so that an entry's size does not grow with the PSBT's outputs (issue 11,
// finding 4). The whole analysis is shown by `cosigner psbt inspect`.
type AuditSummary struct {
	UnsignedTxID string         `json:"unsigned_txid"`
	Inputs       int            `json:"inputs"`
	Outputs      int            `json:"outputs"`
	InputTotal   btcutil.Amount `json:"input_total_sat"`
	ChangeTotal  btcutil.Amount `json:"change_total_sat"`
	Outflow      btcutil.Amount `json:"outflow_sat"`
	Fee          btcutil.Amount `json:"fee_sat"`
	VSize        int64          `json:"vsize"`
	FeeRate      psbt.FeeRate   `json:"feerate_sat_vb"`
	LockTime     uint32         `json:"locktime"`
	RBF          bool           `json:"rbf"`
	PSBTVersion  uint32         `json:"psbt_version"`
	ScriptType   string         `json:"script_type"`
	// Warnings counts the analysis's warnings by code.
	Warnings map[string]int `json:"warnings,omitempty"`
	// Destinations are the largest spend outputs (at most Limits.AuditDestinations), largest
	// first; OtherDestinations and OtherSat count and sum the rest.
	Destinations      []AuditDestination `json:"destinations,omitempty"`
	OtherDestinations int                `json:"other_destinations,omitempty"`
	OtherSat          btcutil.Amount     `json:"other_sat,omitempty"`
}

// AuditDestination is one spend output named in an AuditSummary.
type AuditDestination struct {
	Index   int            `json:"index"`
	Address string         `json:"address,omitempty"` // empty for a script with no address
	Value   btcutil.Amount `json:"value_sat"`
}

// Summarize is a's AuditSummary naming at most top destinations (the spend outputs of largest
// value, ties by index).
func Summarize(a *psbt.Analysis, top int) AuditSummary {
	s := AuditSummary{UnsignedTxID: a.UnsignedTxID, Inputs: len(a.Inputs), Outputs: len(a.Outputs), InputTotal: a.InputTotal,
		ChangeTotal: a.ChangeTotal, Outflow: a.Outflow, Fee: a.Fee, VSize: a.VSize, FeeRate: a.FeeRate, LockTime: a.LockTime,
		RBF: a.RBF, PSBTVersion: a.PSBTVersion, ScriptType: a.ScriptType}
	for _, w := range a.Warnings {
		if s.Warnings == nil {
			s.Warnings = map[string]int{}
		}
		s.Warnings[w.Code]++
	}
	var spends []AuditDestination
	for _, o := range a.Outputs {
		if o.Kind == psbt.KindSpend {
			spends = append(spends, AuditDestination{Index: o.Index, Address: o.Address, Value: o.Value})
		}
	}
	slices.SortFunc(spends, func(x, y AuditDestination) int {
		return cmp.Or(cmp.Compare(y.Value, x.Value), cmp.Compare(x.Index, y.Index))
	})
	if len(spends) > top {
		for _, d := range spends[top:] {
			s.OtherDestinations++
			s.OtherSat += d.Value
		}
		spends = spends[:top]
	}
	s.Destinations = spends
	return s
}

// fillAudit puts a's bounded summary (see Summarize) into an audit entry.
func fillAudit(ae *store.AuditEntry, a *psbt.Analysis, top int) {
	if a == nil {
		return
	}
	ae.UnsignedTxID, ae.OutflowSat, ae.FeeSat = a.UnsignedTxID, int64(a.Outflow), int64(a.Fee)
	if b, err := json.Marshal(Summarize(a, top)); err == nil {
		ae.Analysis = string(b)
	}
}
