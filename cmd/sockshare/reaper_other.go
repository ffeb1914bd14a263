//go:build unix && !linux

package main

import (
	"log/slog"

	"github.com/sockshare/sockshare"
)

// startReaper does nothing here: sockshare runs as PID 1 in Linux
// containers only.
func startReaper(*sockshare.Master, *slog.Logger) func() { return func() {} }
