//go:build unix && !linux

package sockshare

import "syscall"

// workerSysProcAttr: no parent-death signal here; workers rely on IPC EOF.
func workerSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
