//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package main

// isTerminal is false where we do not know how to ask: no progress line.
func isTerminal(uintptr) bool { return false }
