package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Per-process CPU time, read from /proc (Linux): how the CPU a benchmark used splits between
// cosigner, each relay and the load generator (this process), so that a bottleneck is named.

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU is the user + system CPU time process pid has used so far (all its threads), read
// from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// findProc returns the pid of the one running process for which match(args, environ) holds
// (args: its command line; environ: its environment, NUL-separated).
func findProc(what string, match func(args []string, environ string) bool) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if match(strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00"), "\x00"+string(env)) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("bench: %d processes look like %s (%v), want one", len(found), what, found)
	}
	return found[0], nil
}

// cosignerPID finds the `cosigner run` process whose COSIGNER_DATA_DIR is dataDir.
func cosignerPID(dataDir string) (int, error) {
	return findProc("cosigner run in "+dataDir, func(args []string, env string) bool {
		return len(args) >= 2 && filepath.Base(args[0]) == "cosigner" && args[1] == "run" &&
			strings.Contains(env, "\x00COSIGNER_DATA_DIR="+dataDir+"\x00")
	})
}

// relayPID finds relay i of the network in netDir (its command line names its files there:
// <netDir>/relay-i/config.toml for nostr-rs-relay, <netDir>/relay-i.sqlite for the Node relay).
func relayPID(netDir string, i int) (int, error) {
	name := filepath.Join(netDir, fmt.Sprintf("relay-%d", i))
	return findProc(name, func(args []string, _ string) bool {
		for _, a := range args {
			if a == name || strings.HasPrefix(a, name+"/") || a == name+".sqlite" {
				return true
			}
		}
		return false
	})
}

// cpuMeter reads the CPU time of a set of named processes (pid 0: this process, the load
// generator) at start and at end.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
	began time.Time
}

func newCPUMeter() *cpuMeter { return &cpuMeter{} }

func (m *cpuMeter) add(name string, pid int) {
	m.names, m.pids = append(m.names, name), append(m.pids, pid)
}

func (m *cpuMeter) read() ([]time.Duration, error) {
	out := make([]time.Duration, len(m.pids))
	for i, pid := range m.pids {
		if pid == 0 {
			pid = os.Getpid()
		}
		d, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// begin starts a measurement.
func (m *cpuMeter) begin() error {
	var err error
	m.start, err = m.read()
	m.began = time.Now()
	return err
}

// cpuUse is what one measurement found: each process's CPU time and the wall time.
type cpuUse struct {
	names []string
	cpu   []time.Duration
	wall  time.Duration
}

// end finishes a measurement.
func (m *cpuMeter) end() (cpuUse, error) {
	now, err := m.read()
	if err != nil {
		return cpuUse{}, err
	}
	u := cpuUse{names: m.names, cpu: make([]time.Duration, len(now)), wall: time.Since(m.began)}
	for i := range now {
		u.cpu[i] = now[i] - m.start[i]
	}
	return u, nil
}

// of is the CPU time of the process named name.
func (u cpuUse) of(name string) time.Duration {
	for i, n := range u.names {
		if n == name {
			return u.cpu[i]
		}
	}
	return 0
}

// shares says how many cores each process kept busy, e.g. "cosigner 0.62, relay-0 0.31,
// load generator 0.55 cores (of 2)".
func (u cpuUse) shares(cores int) string {
	parts := make([]string, len(u.names))
	for i, n := range u.names {
		parts[i] = fmt.Sprintf("%s %.2f", n, u.cpu[i].Seconds()/u.wall.Seconds())
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" cores (of %d)", cores)
}

// busiest names the process that used the most CPU.
func (u cpuUse) busiest() string {
	best := 0
	for i := range u.cpu {
		if u.cpu[i] > u.cpu[best] {
			best = i
		}
	}
	return u.names[best]
}

// bottleneck names what limited a throughput run: the busiest process when the benchmark's
// processes kept the machine's cores busy, otherwise the rest of the machine — when together
// they used less than 60 % of the cores, the requests were waiting for CPU that other load
// took (the load average says how much) or for something that is not CPU.
func (u cpuUse) bottleneck(cores int) string {
	var total time.Duration
	for _, c := range u.cpu {
		total += c
	}
	used := total.Seconds() / u.wall.Seconds()
	if used < 0.6*float64(cores) {
		return fmt.Sprintf("not CPU-bound in these processes (together %.2f of %d cores; load average %s)", used, cores, loadAvg())
	}
	return "busiest: " + u.busiest()
}

// delayedACKs is the number of delayed TCP ACKs this network namespace has sent since boot
// (/proc/net/netstat, TcpExt DelayedACKs): each is a delayed-ACK timer that fired. A relay
// with Nagle's algorithm on can hold a small write only until the peer's ACK, and the peer
// holds that ACK only until its timer fires or it sends data; so the timers fired during a run
// (an upper bound: other traffic on the machine counts too) bound the writes held that long.
func delayedACKs() (int64, error) {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "DelayedACKs" {
				return strconv.ParseInt(values[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/net/netstat: no TcpExt DelayedACKs")
}
