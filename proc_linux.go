package sockshare

import "syscall"

// workerSysProcAttr makes the kernel send SIGTERM to a worker when the
// master dies, as a backstop to IPC EOF (which also catches a master that is
// PID 1 in a container). The worker's own IPC EOF handling escalates to
// SIGKILL after OrphanGrace.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
