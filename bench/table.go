package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Row is one line of the table `make bench` writes to docs/benchmarks.md: a figure measured in
// this run beside its baseline measured in the same run, the ratio between them and the goal
// (issue 15's table). Strings are written as given (units included, e.g. "1,310 req/s/core").
type Row struct {
	// Key orders the table (see tableOrder); rows with a key not listed there come last, in
	// the order they were recorded.
	Key string
	// Figure says what is measured, e.g. "decode→analyze→evaluate→sign, 2-in/2-out P2WSH".
	Figure string
	// Value is cosigner's figure in this run.
	Value string
	// Baseline is the same-run baseline it is compared with ("—" when there is none).
	Baseline string
	// Ratio is Value against Baseline as the goal reads it, e.g. "1.8× the floor".
	Ratio string
	// Goal is the target, e.g. "≤ 2×".
	Goal string
	// Met is "yes", "no" or "" (no pass/fail goal); use MetIf.
	Met string
}

// MetIf returns "yes" when ok, else "no": the Met column of a Row.
func MetIf(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// tableOrder is the order of the rows in docs/benchmarks.md: issue 15's table, then the floor.
var tableOrder = []string{
	"pipeline-p2wsh",
	"pipeline-taproot",
	"nip46-concurrent-node",
	"nip46-native-ping",
	"nip46-native-sign-psbt",
	"nip46-cpu-ping",
	"nip46-cpu-sign-psbt",
	"ledger-p99",
	"round-trip-floor",
	"round-trip",
	"restart-10k",
	"outbound-broadcast",
	"sync-10k",
	"sync-50k",
	"watcher-memory",
	"headers-mainnet-restart",
}

var table struct {
	sync.Mutex
	rows []Row
}

// Record adds a row to the table that TestMain writes to docs/benchmarks.md when the run ends
// (a later row with the same Key replaces the earlier one). Safe for concurrent use.
func Record(r Row) {
	table.Lock()
	defer table.Unlock()
	for i := range table.rows {
		if table.rows[i].Key == r.Key {
			table.rows[i] = r
			return
		}
	}
	table.rows = append(table.rows, r)
}

const (
	tableBegin = "<!-- make bench: begin (generated; do not edit by hand) -->"
	tableEnd   = "<!-- make bench: end -->"
)

// writeTable replaces the generated block of path (between tableBegin and tableEnd, added
// after the title when absent) with the rows recorded in this run, headed by the date, commit
// and machine. A run that recorded no row leaves the file alone.
func writeTable(path string, started time.Time, load0 string) error {
	table.Lock()
	rows := append([]Row(nil), table.rows...)
	table.Unlock()
	if len(rows) == 0 {
		return nil
	}
	rank := map[string]int{}
	for i, k := range tableOrder {
		rank[k] = i
	}
	pos := func(r Row) int {
		if i, ok := rank[r.Key]; ok {
			return i
		}
		return len(tableOrder)
	}
	sort.SliceStable(rows, func(i, j int) bool { return pos(rows[i]) < pos(rows[j]) })

	var b strings.Builder
	fmt.Fprintln(&b, tableBegin)
	fmt.Fprintf(&b, "Written by `make bench` on %s (%s of benchmarking) at commit %s.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second), commit())
	fmt.Fprintf(&b, "Machine: %s; %d CPUs (%s); load average %s at the start, %s at the end.\n\n",
		runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), cpuModel(), load0, loadAvg())
	if len(rows) < len(tableOrder) {
		fmt.Fprintf(&b, "A partial run: %d of the table's %d rows were measured.\n\n", len(rows), len(tableOrder))
	}
	fmt.Fprintln(&b, "| figure | cosigner | baseline, same run | ratio | goal | met |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(r.Value), cell(r.Baseline), cell(r.Ratio), cell(r.Goal), cell(r.Met))
	}
	fmt.Fprintln(&b, tableEnd)

	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out []byte
	if i, j := bytes.Index(old, []byte(tableBegin)), bytes.Index(old, []byte(tableEnd)); i >= 0 && j > i {
		out = append(append(append([]byte{}, old[:i]...), b.String()...), old[j+len(tableEnd)+1:]...)
	} else {
		// After the title line and the sentence under it.
		cut := bytes.Index(old, []byte("\n\n## "))
		if cut < 0 {
			cut = len(old)
		}
		out = append(append(append([]byte{}, old[:cut]...), "\n\n"+b.String()...), old[cut:]...)
	}
	return os.WriteFile(path, out, 0o644)
}

func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// benchmarksDoc is docs/benchmarks.md seen from this package's directory (go test runs in it).
var benchmarksDoc = filepath.Join("..", "docs", "benchmarks.md")
