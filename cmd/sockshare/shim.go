//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/fdproto"
)

// The exec shim. systemd's protocol wants LISTEN_PID to be the worker's
// own pid, which os/exec cannot know before the fork. So the master starts
// this executable again, marked with sockshare.EnvExecShim, and it sets
// LISTEN_PID to its pid and execs the command: exec keeps the pid. The
// library leaves the worker markers alone in a shim, so a command built
// with it still finds its IPC channel.
//
// The shim's arguments: the command's path, then its argv (argv[0] as the
// user typed it).

func execShim(stderr io.Writer) int {
	if len(os.Args) < 3 {
		fmt.Fprintln(stderr, "sockshare: exec shim without a command")
		return 127
	}
	path, argv := os.Args[1], os.Args[2:]
	os.Unsetenv(sockshare.EnvExecShim)
	if os.Getenv(fdproto.EnvListenFDs) != "" {
		os.Setenv(fdproto.EnvListenPID, strconv.Itoa(os.Getpid()))
	}
	err := syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(stderr, "sockshare: exec %s: %v\n", path, err)
	return 127
}
