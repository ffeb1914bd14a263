// Command sockshare runs any program as N worker processes behind shared
// listening sockets, with sockshare's policies, supervision and rolling
// reloads:
//
//	sockshare run -listen tcp://127.0.0.1:8080 -policy reuseport -- python3 app.py
//
// Each worker gets the sockets as inherited descriptors (3, 4, ...) and the
// environment of systemd's socket activation (LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID), einhorn's and Server::Starter's, so existing programs work
// unchanged; a Go program built with github.com/sockshare/sockshare also
// gets the master's IPC channel. Run "sockshare run -h" for every flag.
//
// Exit status: 0 after a graceful stop, 1 when the workers cannot run
// (port in use, command not found, every slot given up), 2 for bad usage.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command: its result is the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if isShim() {
		return execShim(stderr)
	}
	if len(args) == 0 {
		io.WriteString(stderr, "sockshare: no subcommand; try sockshare run -h\n")
		return 2
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "sockshare", version())
		return 0
	case "help", "-h", "-help", "--help":
		io.WriteString(stdout, cli.Usage())
		return 0
	}
	fmt.Fprintf(stderr, "sockshare: unknown subcommand %q; want run or version\n", args[0])
	return 2
}

func isShim() bool { return os.Getenv(sockshare.EnvExecShim) != "" }

// shimArgs are the master's Config.Args for a command found at path.
func shimArgs(path string, argv []string) []string {
	return append([]string{path}, argv...)
}

// version is the module version this binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
