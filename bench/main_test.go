package bench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain runs the benchmarks, then writes the rows they recorded (Record) to
// docs/benchmarks.md, so the figures there are never copied by hand. BENCH_TABLE=0 leaves the
// file alone (for a quick run of one benchmark).
func TestMain(m *testing.M) {
	started, load0 := time.Now(), loadAvg()
	code := m.Run()
	if os.Getenv("BENCH_TABLE") != "0" {
		if err := writeTable(benchmarksDoc, started, load0); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", benchmarksDoc, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
