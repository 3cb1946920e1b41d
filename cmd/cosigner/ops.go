package main

// ops.go — the operator's read-only commands: version, config, audit, and `cosigner status
// --json` (the daemon's /healthz and /status shapes are daemon.HealthJSON and daemon.WalletJSON).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/store"
)

// versionString describes the build from the binary's embedded build information
// (runtime/debug.ReadBuildInfo): the main module's version, the VCS revision and time when the
// binary was built from a checkout (with "+dirty" for uncommitted changes), and the Go version.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "cosigner (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	out := "cosigner " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "+dirty"
		}
		out += " (" + rev
		if at != "" {
			out += ", " + at
		}
		out += ")"
	}
	return out + " " + bi.GoVersion
}

// configVar is one COSIGNER_* setting as `cosigner config` prints it.
type configVar struct {
	Variable    string `json:"variable"`
	Value       string `json:"value"`
	Default     string `json:"default"`
	Source      string `json:"source"` // "environment" or "default"
	Description string `json:"description"`
}

// secretConfigFields are masked in `cosigner config`: their value never reaches the output.
var secretConfigFields = map[string]bool{"Passphrase": true}

// configVars lists every setting of cfg (the loaded configuration) from the Config struct's
// envconfig tags: name, effective value (secrets masked), default, source and description.
func configVars(cfg *Config) []configVar {
	var vars []configVar
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("envconfig")
		if key == "" || f.Tag.Get("ignored") == "true" || !f.IsExported() {
			continue
		}
		name := "COSIGNER_" + key
		cv := configVar{Variable: name, Default: f.Tag.Get("default"), Description: f.Tag.Get("desc"), Source: "default"}
		if _, set := os.LookupEnv(name); set {
			cv.Source = "environment"
		}
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Slice:
			parts := make([]string, fv.Len())
			for j := range parts {
				parts[j] = fmt.Sprint(fv.Index(j).Interface())
			}
			cv.Value = strings.Join(parts, ",")
		default:
			cv.Value = fmt.Sprint(fv.Interface())
		}
		if secretConfigFields[f.Name] && cv.Value != "" {
			cv.Value = "(set, masked)"
		}
		vars = append(vars, cv)
	}
	return vars
}

// cmdConfig prints every COSIGNER_* variable with its effective value, default, source and
// meaning; --json prints them as a JSON array.
func cmdConfig(_ context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{"usage: cosigner config [--json]"}
	}
	vars := configVars(cfg)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(vars)
	}
	for _, cv := range vars {
		val := cv.Value
		if val == "" {
			val = `""`
		}
		def := cv.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(out, "%s=%s\n    %s\n    default %s; from the %s\n", cv.Variable, val, cv.Description, def, cv.Source)
	}
	return nil
}

// parseSince reads --since: a duration back from now ("36h", "7d") or an RFC 3339 time or a
// date (YYYY-MM-DD, UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("audit: --since %q: want a duration back from now (36h, 7d), an RFC 3339 time or a date (2026-12-01)", s)
}

// auditJSON is one audit entry in `cosigner audit --json`.
type auditJSON struct {
	At           time.Time       `json:"at"`
	Client       string          `json:"client"`
	RequestID    string          `json:"request_id"`
	Method       string          `json:"method"`
	Decision     string          `json:"decision"`
	Rule         string          `json:"rule,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	UnsignedTxID string          `json:"unsigned_txid,omitempty"`
	OutflowSat   int64           `json:"outflow_sat"`
	FeeSat       int64           `json:"fee_sat"`
	PolicyHash   string          `json:"policy_hash,omitempty"`
	Analysis     json.RawMessage `json:"analysis,omitempty"`
	Explanation  json.RawMessage `json:"explanation,omitempty"`
}

// rawJSON returns s as raw JSON when it is valid JSON, otherwise as a JSON string (nil if empty).
func rawJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// cmdAudit prints the audit log (every decision: client, method, decision, rule, reason, txid,
// outflow, fee), oldest first: a table, or one JSON object per line with --json (with the
// analysis and the rule-by-rule explanation).
func cmdAudit(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	since := fs.String("since", "", "")
	limit := fs.Int("limit", 1000, "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{"usage: cosigner audit [--since DURATION|TIME] [--limit N] [--json]"}
	}
	if *limit < 1 {
		return usageError{"audit: --limit must be at least 1"}
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.DBPath()); err != nil {
		return fmt.Errorf("audit: no database at %s (COSIGNER_DATA_DIR): %w", cfg.DBPath(), err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	entries, err := db.AuditSince(ctx, from, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		for _, a := range entries {
			if err := enc.Encode(auditJSON{At: a.At.UTC(), Client: a.Client, RequestID: a.RequestID, Method: a.Method,
				Decision: a.Decision, Rule: a.Rule, Reason: a.Reason, UnsignedTxID: a.UnsignedTxID, OutflowSat: a.OutflowSat,
				FeeSat: a.FeeSat, PolicyHash: a.PolicyHash, Analysis: rawJSON(a.Analysis), Explanation: rawJSON(a.Explanation)}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(out, "no audit entries")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tCLIENT\tREQUEST\tMETHOD\tDECISION\tRULE\tOUTFLOW (sat)\tFEE (sat)\tTXID\tREASON")
	for _, a := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", a.At.UTC().Format(time.DateTime), short(a.Client), short(a.RequestID),
			a.Method, a.Decision, a.Rule, a.OutflowSat, a.FeeSat, short(a.UnsignedTxID), oneLine(a.Reason))
	}
	return tw.Flush()
}

// short cuts a long hex id to its first 12 characters.
func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// oneLine keeps a reason on one line of at most 120 characters.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:117] + "…"
	}
	return s
}

// statusJSON is `cosigner status --json`: the stored wallet view and, when the daemon's health
// endpoint answered, its live state (null otherwise).
type statusJSON struct {
	Wallet daemon.WalletJSON  `json:"wallet"`
	Daemon *daemon.HealthJSON `json:"daemon"`
}
