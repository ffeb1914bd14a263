//go:build unix

package fdproto

import (
	"net"

	"golang.org/x/sys/unix"
)

const canInspect = true

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func setCloexec(fd int) { unix.CloseOnExec(fd) }

// describe names fd's network by SO_TYPE and the family of its
// getsockname(2) address; "", nil if it is no socket of ours to serve.
func describe(fd int) (string, net.Addr) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return inet(typ, "4", sa.Addr[:], sa.Port, "")
	case *unix.SockaddrInet6:
		zone := ""
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				zone = ifi.Name
			}
		}
		return inet(typ, "6", sa.Addr[:], sa.Port, zone)
	case *unix.SockaddrUnix:
		switch typ {
		case unix.SOCK_STREAM:
			return "unix", &net.UnixAddr{Name: sa.Name, Net: "unix"}
		case unix.SOCK_DGRAM:
			return "unixgram", &net.UnixAddr{Name: sa.Name, Net: "unixgram"}
		case unix.SOCK_SEQPACKET:
			return "unixpacket", &net.UnixAddr{Name: sa.Name, Net: "unixpacket"}
		}
	}
	return "", nil
}

func inet(typ int, fam string, ip []byte, port int, zone string) (string, net.Addr) {
	ip = append(net.IP(nil), ip...)
	switch typ {
	case unix.SOCK_STREAM:
		return "tcp" + fam, &net.TCPAddr{IP: ip, Port: port, Zone: zone}
	case unix.SOCK_DGRAM:
		return "udp" + fam, &net.UDPAddr{IP: ip, Port: port, Zone: zone}
	}
	return "", nil
}
