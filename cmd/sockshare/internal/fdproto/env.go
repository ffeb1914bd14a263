package fdproto

import (
	"net"
	"strconv"
	"strings"
)

// FirstFD is the descriptor of a worker's first socket.
const FirstFD = 3

// maxFDName is systemd's limit on a descriptor name.
const maxFDName = 255

// The environment variables of the protocols.
const (
	EnvListenFDs         = "LISTEN_FDS"
	EnvListenPID         = "LISTEN_PID"
	EnvListenFDNames     = "LISTEN_FDNAMES"
	EnvEinhornFDCount    = "EINHORN_FD_COUNT"
	EnvEinhornFDPrefix   = "EINHORN_FD_" // + index: EINHORN_FD_0=3
	EnvEinhornFDs        = "EINHORN_FDS" // "3 4", einhorn's older form
	EnvServerStarterPort = "SERVER_STARTER_PORT"
	EnvWorkerID          = "SOCKSHARE_WORKER_ID"
	EnvSlot              = "SOCKSHARE_SLOT"
)

// FDName is s's name in LISTEN_FDNAMES: s.Name with every character
// systemd forbids (':' and anything not printable ASCII) made '_' and cut
// to 255 bytes; when s.Name is empty, network-host-port made the same way,
// "tcp-127.0.0.1-8080" or "tcp6-__1-8080" (systemd itself would say
// "unknown", which tells a worker nothing).
func (s Socket) FDName() string {
	name := s.Name
	if name == "" {
		host, port, err := net.SplitHostPort(s.Addr)
		if err != nil {
			host, port = s.Addr, ""
		}
		name = s.Network + "-" + host + "-" + port
	}
	b := []byte(name)
	for i, c := range b {
		if c == ':' || c < 0x20 || c >= 0x7f {
			b[i] = '_'
		}
	}
	if len(b) > maxFDName {
		b = b[:maxFDName]
	}
	return string(b)
}

// serverStarterEntry is s at fd in SERVER_STARTER_PORT, as start_server
// writes it: "8080=3" for an IPv4 wildcard address, "127.0.0.1:8080=3" or
// "[::1]:8080=3" otherwise, a UDP socket prefixed with 'u'.
func serverStarterEntry(s Socket, fd int) string {
	spec := s.Addr
	if host, port, err := net.SplitHostPort(s.Addr); err == nil && (host == "0.0.0.0" || host == "") {
		spec = port
	}
	if strings.HasPrefix(s.Network, "udp") {
		spec = "u" + spec
	}
	return spec + "=" + strconv.Itoa(fd)
}

// WorkerEnv is the environment entries telling a worker that socks sit at
// descriptors 3, 4, ..., and its id and slot. With no sockets it gives
// only the id and slot. It leaves out LISTEN_PID, which must be the
// worker's own pid (EnvListenPID), and NOTIFY_SOCKET.
func WorkerEnv(socks []Socket, workerID, slot int) []string {
	env := make([]string, 0, 7+len(socks))
	if n := len(socks); n > 0 {
		names := make([]string, n)
		fds := make([]string, n)
		starter := make([]string, n)
		for i, s := range socks {
			names[i] = s.FDName()
			fds[i] = strconv.Itoa(FirstFD + i)
			starter[i] = serverStarterEntry(s, FirstFD+i)
		}
		count := strconv.Itoa(n)
		env = append(env,
			EnvListenFDs+"="+count,
			EnvListenFDNames+"="+strings.Join(names, ":"),
			EnvEinhornFDCount+"="+count)
		for i, fd := range fds {
			env = append(env, EnvEinhornFDPrefix+strconv.Itoa(i)+"="+fd)
		}
		env = append(env,
			EnvEinhornFDs+"="+strings.Join(fds, " "),
			EnvServerStarterPort+"="+strings.Join(starter, ";"))
	}
	return append(env,
		EnvWorkerID+"="+strconv.Itoa(workerID),
		EnvSlot+"="+strconv.Itoa(slot))
}

// StripEnv returns env without the variables WorkerEnv sets (EINHORN_FD_*
// of any index) and LISTEN_PID. It does not modify env.
func StripEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == EnvListenFDs, k == EnvListenPID, k == EnvListenFDNames,
			k == EnvEinhornFDs, k == EnvServerStarterPort, k == EnvWorkerID, k == EnvSlot,
			strings.HasPrefix(k, EnvEinhornFDPrefix): // EINHORN_FD_COUNT too
			continue
		}
		out = append(out, kv)
	}
	return out
}
