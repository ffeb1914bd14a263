package fdproto

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadListen is wrapped by every error of ParseListenURL.
var ErrBadListen = errors.New("bad listen URL")

// Socket describes one listening socket a worker gets, at descriptor 3
// plus its index.
type Socket struct {
	// Name is the descriptor's name in LISTEN_FDNAMES; "" gives a
	// default (see FDName).
	Name string
	// Network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6".
	Network string
	// Addr is the address as bound, host:port, an IPv6 host in brackets.
	Addr string
}

// String writes s back as a listen URL.
func (s Socket) String() string {
	u := s.Network + "://" + s.Addr
	if s.Name != "" {
		u += "#" + s.Name
	}
	return u
}

// ParseListenURL reads a listen URL: scheme://host:port[#name], where the
// scheme is a network (tcp, tcp4, tcp6, udp, udp4, udp6, any case), host
// an IP address (IPv6 in brackets, a zone allowed) or a host name, port a
// number 0-65535, and name, after '#', the descriptor's name (printable
// ASCII without ':', at most 255 bytes, as systemd allows). The host is
// required: 0.0.0.0 or [::] says which "all addresses" is meant. A path,
// query or user is an error. IP addresses come back in canonical form.
func ParseListenURL(s string) (Socket, error) {
	bad := func(format string, args ...any) (Socket, error) {
		return Socket{}, fmt.Errorf("%w %q: %s", ErrBadListen, s, fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return bad("no scheme: want tcp://host:port, udp://host:port, ...")
	}
	network := strings.ToLower(scheme)
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return bad("scheme %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", scheme)
	}
	hostport, name, hasName := strings.Cut(rest, "#")
	if hasName {
		if reason := badFDName(name); reason != "" {
			return bad("name %q: %s", name, reason)
		}
	}
	if i := strings.IndexAny(hostport, "/?"); i >= 0 {
		return bad("unexpected path or query %q", hostport[i:])
	}
	if strings.Contains(hostport, "@") {
		return bad("unexpected user info")
	}
	if hostport == "" {
		return bad("missing host:port")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "too many colons in address" {
			return bad("an IPv6 address goes in brackets, as [::1]:8080")
		}
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return bad("missing port")
		}
		return bad("%v", err)
	}
	if port == "" {
		return bad("missing port")
	}
	if strings.Trim(port, "0123456789") != "" {
		return bad("port %q is not a number", port)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p > 65535 {
		return bad("port %s out of range 0-65535", port)
	}
	if host == "" {
		return bad("missing host: write 0.0.0.0 or [::] for all addresses")
	}
	bracketed := strings.HasPrefix(hostport, "[")
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Is4() && bracketed:
			return bad("IPv4 address %s in brackets", host)
		case ip.Is6() && !bracketed:
			return bad("an IPv6 address goes in brackets, as [::1]:8080")
		case ip.Is6() && strings.HasSuffix(network, "4"):
			return bad("%s wants an IPv4 address, not %s", network, host)
		case ip.Is4() && strings.HasSuffix(network, "6"):
			return bad("%s wants an IPv6 address, not %s", network, host)
		}
		host = ip.String()
	} else if bracketed {
		return bad("%q in brackets is not an IPv6 address", host)
	} else if reason := badHostName(host); reason != "" {
		return bad("host %q: %s", host, reason)
	}
	return Socket{Name: name, Network: network, Addr: net.JoinHostPort(host, strconv.Itoa(p))}, nil
}

// badHostName says what makes h no DNS name, or "".
func badHostName(h string) string {
	if len(h) > 253 {
		return "longer than 253 bytes"
	}
	// A name ending in a number is a mistyped IPv4 address (256.1.1.1,
	// 127.000.0.1): no top-level domain is numeric.
	if last := h[strings.LastIndexByte(h, '.')+1:]; last != "" && strings.Trim(last, "0123456789") == "" {
		return "not a valid IP address"
	}
	for label := range strings.SplitSeq(h, ".") {
		switch {
		case label == "":
			return "empty label"
		case len(label) > 63:
			return "label longer than 63 bytes"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "label starts or ends with '-'"
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return "not an IP address, and not a host name"
			}
		}
	}
	return ""
}

// badFDName says why systemd would refuse name in LISTEN_FDNAMES, or "".
func badFDName(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxFDName:
		return fmt.Sprintf("longer than %d bytes", maxFDName)
	}
	for _, c := range []byte(name) {
		if c == ':' {
			return "contains ':', the LISTEN_FDNAMES separator"
		}
		if c < 0x20 || c >= 0x7f {
			return "not printable ASCII"
		}
	}
	return ""
}
