package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type recordingLog struct {
	failed bool
	lines  []string
}

func (r *recordingLog) Helper()      {}
func (r *recordingLog) Failed() bool { return r.failed }
func (r *recordingLog) Logf(format string, a ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, a...))
}

func TestLogOnFailure(t *testing.T) {
	dir := t.TempDir()
	log := "line 1\nline 2\n==================\nWARNING: DATA RACE\nWrite at 0x00c by goroutine 7\n==================\nline 3\n"
	if err := os.WriteFile(filepath.Join(dir, "cosigner.log"), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Env{Dir: dir, Daemon: &Daemon{Name: "A", LogPath: filepath.Join(dir, "cosigner.log")}}

	passed := &recordingLog{}
	e.LogOnFailure(passed, 10)
	if len(passed.lines) != 0 {
		t.Fatalf("a passing test got %q", passed.lines)
	}

	failed := &recordingLog{failed: true}
	e.LogOnFailure(failed, 1)
	if len(failed.lines) != 2 {
		t.Fatalf("a failed test got %d log calls %q, want the tail and the race reports", len(failed.lines), failed.lines)
	}
	if !strings.Contains(failed.lines[0], "line 3") || strings.Contains(failed.lines[0], "line 1") {
		t.Errorf("tail of 1 line = %q", failed.lines[0])
	}
	if !strings.Contains(failed.lines[1], "WARNING: DATA RACE") {
		t.Errorf("race reports = %q", failed.lines[1])
	}
}
