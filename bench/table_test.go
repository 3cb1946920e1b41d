package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteTableReplacesOnlyTheGeneratedBlock: the hand-written text around the table stays,
// a second run replaces the first run's table, rows follow tableOrder.
func TestWriteTableReplacesOnlyTheGeneratedBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nintro\n\n## chainwatch\n\nprose\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table.Lock()
	saved := table.rows
	table.rows = nil
	table.Unlock()
	t.Cleanup(func() { table.Lock(); table.rows = saved; table.Unlock() })

	Record(Row{Key: "sync-10k", Figure: "sync", Value: "5 s", Met: MetIf(true)})
	Record(Row{Key: "pipeline-p2wsh", Figure: "pipe | wsh", Value: "1 req/s"})
	if err := writeTable(path, time.Now(), "0 0 0"); err != nil {
		t.Fatal(err)
	}
	Record(Row{Key: "pipeline-p2wsh", Figure: "pipe | wsh", Value: "2 req/s"})
	if err := writeTable(path, time.Now(), "0 0 0"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	s := string(got)
	if strings.Count(s, tableBegin) != 1 || strings.Count(s, tableEnd) != 1 {
		t.Fatalf("want one generated block:\n%s", s)
	}
	if !strings.Contains(s, "intro") || !strings.Contains(s, "## chainwatch\n\nprose") {
		t.Fatalf("hand-written text lost:\n%s", s)
	}
	if strings.Contains(s, "1 req/s") || !strings.Contains(s, "| pipe \\| wsh | 2 req/s |") {
		t.Fatalf("row not replaced or not escaped:\n%s", s)
	}
	if strings.Index(s, "pipe \\| wsh") > strings.Index(s, "| sync |") {
		t.Fatalf("rows out of tableOrder:\n%s", s)
	}
}
