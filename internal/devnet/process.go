package devnet

// process.go — starting, watching and stopping the network's child processes.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one running child (btcd, ElectrumX or a relay) whose standard
// output and error go to a log file. Its wait goroutine ends when the child
// exits; stop makes sure that happens.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the child has exited
	waitErr error         // valid after done is closed
	log     *slog.Logger
}

// startProcess starts bin with args and extra environment, appending its
// output to logPath. The child gets its own process group and, on Linux, is
// killed when the harness dies (see sysProcAttr).
func startProcess(name, bin string, args, env []string, dir, logPath string, log *slog.Logger) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log: %w", name, err)
	}
	fmt.Fprintf(f, "---- devnet %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{}), log: log}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	log.Debug("process started", "name", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how the child ended, with the tail of its log.
func (p *process) exitError() error {
	how := "exit status 0"
	if p.waitErr != nil {
		how = p.waitErr.Error()
	}
	return fmt.Errorf("%s exited early (%s); last lines of %s:\n%s", p.name, how, p.logPath, TailFile(p.logPath, 20))
}

// stop sends SIGTERM to the child's process group, waits up to grace, then
// kills the group and waits. It is safe to call more than once.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.log.Debug("process stopped", "name", p.name, "pid", pid)
		return nil
	case <-time.After(grace):
	}
	p.log.Warn("process did not stop after SIGTERM; killing it", "name", p.name, "pid", pid, "grace", grace)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pid)
	}
}

// TailFile returns the last n lines of path (a process log), or a note saying why it cannot.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const maxTail = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	off := st.Size() - maxTail
	if off < 0 {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("    | ")
		sb.Write(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}
