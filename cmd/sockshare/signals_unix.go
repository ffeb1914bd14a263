//go:build unix

package main

import "syscall"

// gunicorn's convention: SIGTTIN adds a worker, SIGTTOU removes one.
const (
	sigTTIN = syscall.SIGTTIN
	sigTTOU = syscall.SIGTTOU
)
