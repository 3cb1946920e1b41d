//go:build !linux

package devnet

import "syscall"

// sysProcAttr puts each child in its own process group. Outside Linux there
// is no parent-death signal: a killed harness may leave children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
