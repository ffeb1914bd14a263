package fdproto

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

var (
	// errUnsupported is returned by Inherited where descriptors cannot be
	// inspected. It matches errors.ErrUnsupported.
	errUnsupported = fmt.Errorf("fdproto: %w", errors.ErrUnsupported)
	// ErrBadEnv is wrapped when LISTEN_PID, LISTEN_FDS or LISTEN_FDNAMES
	// cannot be right.
	ErrBadEnv = errors.New("fdproto: bad socket-activation environment")
	// ErrUnclaimed is wrapped by Match when inherited sockets match no
	// listen URL.
	ErrUnclaimed = errors.New("fdproto: inherited socket matches no listen URL")
	// ErrMismatch is wrapped by Match when a listen URL names an inherited
	// socket of another network (udp for tcp, or not a socket).
	ErrMismatch = errors.New("fdproto: inherited socket of that name is of another network")
)

// maxInherited bounds LISTEN_FDS: more is a corrupt environment, not a
// unit file.
const maxInherited = 1 << 16

// InheritedFD is a descriptor passed by systemd socket activation.
type InheritedFD struct {
	// FD is the descriptor number, 3 and up. Use it rather than
	// File.Fd(), which would put the socket in blocking mode.
	FD int
	// Name is its name in LISTEN_FDNAMES, "unknown" without that
	// variable, as sd_listen_fds_with_names(3) reports.
	Name string
	// Network is "tcp4", "tcp6", "udp4", "udp6", "unix", "unixgram" or
	// "unixpacket" by its domain and type; "" if it is not a socket or of
	// another kind.
	Network string
	// Addr is its local address (*net.TCPAddr, *net.UDPAddr or
	// *net.UnixAddr), nil when Network is "".
	Addr net.Addr
	// File owns the descriptor; the caller closes it.
	File *os.File
}

// String describes f for messages: fd 3 "web" tcp4 0.0.0.0:80.
func (f InheritedFD) String() string {
	if f.Network == "" || f.Addr == nil {
		return fmt.Sprintf("fd %d %q (not an inet or unix socket)", f.FD, f.Name)
	}
	return fmt.Sprintf("fd %d %q %s %s", f.FD, f.Name, f.Network, f.Addr)
}

// Inherited takes the descriptors systemd passed to this process, as
// sd_listen_fds(1) does: none unless LISTEN_PID is this process's pid; then
// LISTEN_FDS descriptors from 3, named by LISTEN_FDNAMES, each made
// close-on-exec (a worker gets only the sockets it is handed). It unsets
// the three variables whatever the outcome, so no child mistakes them for
// its own. The caller owns the returned files. On error it has taken
// nothing: no descriptor is wrapped, closed, or changed.
func Inherited() ([]InheritedFD, error) {
	defer func() {
		os.Unsetenv(EnvListenPID)
		os.Unsetenv(EnvListenFDs)
		os.Unsetenv(EnvListenFDNames)
	}()
	return inheritedFrom(os.Getenv, os.Getpid(), FirstFD)
}

// inheritedFrom is Inherited reading the environment through getenv, for a
// process of the given pid whose descriptors start at first.
func inheritedFrom(getenv func(string) string, pid, first int) ([]InheritedFD, error) {
	pidStr := getenv(EnvListenPID)
	if pidStr == "" {
		return nil, nil
	}
	listenPID, err := strconv.Atoi(pidStr)
	if err != nil || listenPID <= 0 {
		return nil, fmt.Errorf("%w: %s=%q is not a pid", ErrBadEnv, EnvListenPID, pidStr)
	}
	if listenPID != pid {
		return nil, nil // meant for the process that exec'd us
	}
	nStr := getenv(EnvListenFDs)
	if nStr == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 || n > maxInherited {
		return nil, fmt.Errorf("%w: %s=%q is not a count of descriptors", ErrBadEnv, EnvListenFDs, nStr)
	}
	if n == 0 {
		return nil, nil
	}
	names := make([]string, n)
	if v := getenv(EnvListenFDNames); v != "" {
		names = strings.Split(v, ":")
		if len(names) != n {
			return nil, fmt.Errorf("%w: %s=%q has %d names for %s=%d", ErrBadEnv, EnvListenFDNames, v, len(names), EnvListenFDs, n)
		}
	} else {
		for i := range names {
			names[i] = "unknown"
		}
	}
	if !canInspect {
		return nil, fmt.Errorf("fdproto: %s=%d: %w", EnvListenFDs, n, errUnsupported)
	}
	// Check all before taking any, so an error leaves every one as it was.
	for i := range n {
		if !isOpen(first + i) {
			return nil, fmt.Errorf("%w: %s=%d but descriptor %d is not open", ErrBadEnv, EnvListenFDs, n, first+i)
		}
	}
	fds := make([]InheritedFD, n)
	for i := range fds {
		fd := first + i
		setCloexec(fd)
		network, addr := describe(fd)
		fds[i] = InheritedFD{
			FD: fd, Name: names[i], Network: network, Addr: addr,
			File: os.NewFile(uintptr(fd), "LISTEN_FD "+strconv.Itoa(fd)+" "+names[i]),
		}
	}
	return fds, nil
}

// Match pairs listen URLs with inherited sockets and returns, for each
// listen index matched, the index of its inherited socket. A listen URL
// with a name takes the inherited socket of that name whatever its
// address, as long as both are TCP or both UDP (the unit file decides the
// address; a name of another network is an error wrapping ErrMismatch).
// The others take a socket of the same address: the same network (tcp
// takes tcp4 or tcp6, tcp4 only tcp4), the same port, and the same IP
// after resolving the host, except that for tcp and udp 0.0.0.0 and [::]
// are the same (Go binds either as one dual-stack socket). Port 0 matches
// no address. A listen URL matched by nothing is absent from the map: the
// caller binds it. An inherited socket matched by nothing is an error
// wrapping ErrUnclaimed, naming each such socket.
func Match(listens []Socket, inherited []InheritedFD) (map[int]int, error) {
	m := map[int]int{}
	used := make([]bool, len(inherited))
	for i, l := range listens {
		if l.Name == "" {
			continue
		}
		var other *InheritedFD
		for j := range inherited {
			f := &inherited[j]
			if used[j] || f.Name != l.Name {
				continue
			}
			if kind(f.Network) != "" && kind(f.Network) == kind(l.Network) {
				m[i] = j
				used[j] = true
				other = nil
				break
			}
			other = f
		}
		if other != nil {
			return nil, fmt.Errorf("%w: listen %s, inherited %s", ErrMismatch, l, other)
		}
	}
	for i, l := range listens {
		if _, ok := m[i]; ok || !anyUnused(used) {
			continue
		}
		ip, port, err := resolve(l)
		if err != nil {
			return nil, fmt.Errorf("fdproto: match listen %s: %w", l, err)
		}
		for j, f := range inherited {
			if !used[j] && sameAddr(l.Network, ip, port, f) {
				m[i] = j
				used[j] = true
				break
			}
		}
	}
	var unclaimed []string
	for j, f := range inherited {
		if !used[j] {
			unclaimed = append(unclaimed, f.String())
		}
	}
	if unclaimed != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnclaimed, strings.Join(unclaimed, "; "))
	}
	return m, nil
}

func anyUnused(used []bool) bool {
	for _, u := range used {
		if !u {
			return true
		}
	}
	return false
}

// kind is "tcp" or "udp" for the inet networks, "" for the others.
func kind(network string) string {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return "tcp"
	case "udp", "udp4", "udp6":
		return "udp"
	}
	return ""
}

// family is '4', '6', or 0 for a network that takes either.
func family(network string) byte {
	if network == "" {
		return 0
	}
	if c := network[len(network)-1]; c == '4' || c == '6' {
		return c
	}
	return 0
}

func resolve(l Socket) (net.IP, int, error) {
	switch kind(l.Network) {
	case "tcp":
		a, err := net.ResolveTCPAddr(l.Network, l.Addr)
		if err != nil {
			return nil, 0, err
		}
		return a.IP, a.Port, nil
	case "udp":
		a, err := net.ResolveUDPAddr(l.Network, l.Addr)
		if err != nil {
			return nil, 0, err
		}
		return a.IP, a.Port, nil
	}
	return nil, 0, fmt.Errorf("network %q: want tcp or udp", l.Network)
}

func sameAddr(network string, ip net.IP, port int, f InheritedFD) bool {
	if kind(f.Network) == "" || kind(f.Network) != kind(network) {
		return false
	}
	if fam := family(network); fam != 0 && fam != family(f.Network) {
		return false
	}
	var fip net.IP
	var fport int
	switch a := f.Addr.(type) {
	case *net.TCPAddr:
		fip, fport = a.IP, a.Port
	case *net.UDPAddr:
		fip, fport = a.IP, a.Port
	default:
		return false
	}
	if port == 0 || port != fport {
		return false
	}
	if ip.Equal(fip) {
		return true
	}
	return family(network) == 0 && (ip == nil || ip.IsUnspecified()) && fip.IsUnspecified()
}
