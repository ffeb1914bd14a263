package cli

import (
	"strconv"
	"strings"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

// Usage returns the full usage text of the sockshare command, ending in a
// newline. The -workers default shown is this machine's.
func Usage() string {
	var names []string
	for _, n := range policy.Names() {
		names = append(names, string(n))
	}
	r := strings.NewReplacer(
		"{ncpu}", strconv.Itoa(defaultWorkers()),
		"{max}", strconv.Itoa(sockshare.MaxWorkers),
		"{policies}", strings.Join(names, ", "),
		"{default}", string(policy.Default),
		"{env}", policy.EnvVar,
		"{timeout}", DefaultShutdownTimeout.String(),
	)
	return r.Replace(usageText)
}

const usageText = `Usage:
  sockshare run [flags] -- command [args...]
  sockshare version

sockshare runs any program as N worker processes that share listening
sockets. It binds every -listen address once, starts the workers with the
sockets as inherited descriptors (3, 4, ... in -listen order), restarts a
worker that dies, and reloads them one slot at a time on SIGHUP.

Subcommands:
  run       run the command as workers (flags below)
  version   print the version and exit

Flags of run:
  -workers N
        worker processes, 1..{max} (default {ncpu}, the number of CPUs)
  -policy P
        how the workers share each address, one of
        {policies}
        (aliases none = shared, round-robin = rr; default: ${env},
        else {default}). shared and reuseport work for any program; rr,
        leastconn and sticky hand connections over sockshare's IPC, so
        they need a program built with github.com/sockshare/sockshare,
        or -dispatch kernel (rr, sticky) for any program
  -dispatch auto|master|kernel
        who picks the worker of each connection under rr, leastconn and
        sticky: the master (accept and hand over), the kernel (a BPF
        program; needs root or CAP_BPF+CAP_NET_ADMIN), or auto: the kernel
        where it can, else the master (default auto)
  -listen network://host:port[#name]
        an address to share; repeat for several, at least one. network is
        tcp, tcp4, tcp6, udp, udp4 or udp6; the host is required (0.0.0.0
        or [::] for every address); name is the socket's LISTEN_FDNAMES
        entry. For example tcp://127.0.0.1:8080#http, udp://[::]:5353
  -metrics host:port
        serve Prometheus /metrics and /healthz there (default: off;
        port 0 picks a free port)
  -shutdown-timeout D
        how long a stopping worker may take before it is killed
        (default {timeout})
  -ready notify|started|delay:D
        when a worker counts as ready, which a reload waits for before it
        stops the old worker of the slot and /healthz needs:
          notify    it sends READY=1 to $NOTIFY_SOCKET (sd_notify); one
                    that does not within 30s is killed, as a crash (default)
          started   as soon as its process has started
          delay:D   D after its process has started, for example delay:2s

Each worker inherits sockshare's environment, plus:
  LISTEN_FDS=n, LISTEN_FDNAMES=a:b, LISTEN_PID=<the worker's pid>
        systemd socket activation: the sockets are fds 3..3+n-1 in -listen
        order; a socket without #name is named like tcp-127.0.0.1-8080
  EINHORN_FD_COUNT=n, EINHORN_FD_0=3, EINHORN_FD_1=4, ..., EINHORN_FDS="3 4"
        einhorn
  SERVER_STARTER_PORT=8080=3;127.0.0.1:8081=4;u5353=5
        Server::Starter (start_server); u marks a udp socket
  SOCKSHARE_WORKER_ID=<id>
        the worker's id, never reused
  SOCKSHARE_SLOT=<slot>
        the worker's slot, 0..N-1, kept by its replacements
  NOTIFY_SOCKET=<path>
        where the worker sends READY=1, STOPPING=1 (sd_notify)

Signals to sockshare:
  HUP         reload: replace the workers one slot at a time, each new one
              ready before the old one stops
  TERM, INT   stop: workers get SIGTERM, then SIGKILL after -shutdown-timeout
  TTIN        add a worker
  TTOU        remove a worker

A bad command line prints one line on stderr and exits with status 2.
`
