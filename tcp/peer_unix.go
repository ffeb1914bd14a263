//go:build unix

package tcp

import (
	"net/netip"
	"syscall"
)

// peerAddr returns the address of the client at the other end of a
// connected socket, v4-mapped IPv6 as IPv4, or the zero Addr.
func peerAddr(fd int) netip.Addr {
	sa, err := syscall.Getpeername(fd)
	if err != nil {
		return netip.Addr{}
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(a.Addr)
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap()
	}
	return netip.Addr{}
}
