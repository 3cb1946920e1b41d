//go:build linux

package devnet

import "syscall"

// sysProcAttr puts each child in its own process group (so that a Ctrl-C in a
// terminal reaches only the harness, which then stops the children in order)
// and asks Linux to SIGKILL the child when the harness's thread that started
// it dies, so that a crashed or killed test leaves no processes behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
