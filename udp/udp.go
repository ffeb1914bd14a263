package udp

import (
	"fmt"
	"net"
	"os"
)

// FilePacketConn is the worker side of both strategies: it turns a datagram
// descriptor received from the master (its one shared socket, or the one
// [ReusePortGroup.FD] gave it) into a *net.UDPConn. It takes ownership of
// fd and closes it (the connection works on a duplicate).
func FilePacketConn(fd int) (*net.UDPConn, error) {
	f := os.NewFile(uintptr(fd), "sockshare-udp")
	if f == nil {
		return nil, fmt.Errorf("udp: invalid descriptor %d", fd)
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("udp: packet conn from descriptor: %w", err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("udp: descriptor is a %T, not a UDP socket", pc)
	}
	return uc, nil
}
