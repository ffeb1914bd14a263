package reuse

import (
	"errors"
	"fmt"
	"math"
	"syscall"

	"golang.org/x/sys/unix"
)

// Ancillary-data offsets from <linux/filter.h>, absent from x/sys/unix. A
// classic BPF load from SKF_AD_OFF+SKF_AD_RANDOM reads a fresh pseudo-random
// u32 instead of packet bytes. SKF_AD_OFF is -0x1000, written here as the u32
// the kernel sees in the instruction's k field.
const (
	skfAdOff    uint32 = 0xfffff000
	skfAdRandom uint32 = 56
)

// maxGroup is the largest reuseport group Linux builds (its socket count is
// a u16).
const maxGroup = math.MaxUint16

// AttachCBPFRandom attaches, to the reuseport group of the socket behind c
// (any member), a classic BPF program that returns a random index modulo n:
//
//	ld  rand
//	mod #n
//	ret a
//
// Every datagram, or every new connection, goes to a uniformly random member
// among the first n to join the group, regardless of flow; an index past the
// end of a smaller group falls back to the kernel's hash. The program replaces
// any earlier one and stays attached while the group has members.
//
// n must be in 1..65535. The socket must have been created by [ListenConfig]
// (or otherwise have SO_REUSEPORT set before bind), or the kernel answers
// EINVAL. Linux 4.5+ for UDP, 4.6+ for TCP; elsewhere it returns
// [ErrUnsupported].
func AttachCBPFRandom(c syscall.RawConn, n int) error {
	if n < 1 || n > maxGroup {
		return fmt.Errorf("reuse: attach cbpf: group size %d out of range 1..%d", n, maxGroup)
	}
	if c == nil {
		return errors.New("reuse: attach cbpf: nil RawConn")
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdRandom},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var setErr error
	// Control, not (*os.File).Fd: Fd would switch the socket to blocking
	// mode and take it away from Go's netpoller.
	err := c.Control(func(fd uintptr) {
		setErr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if err != nil {
		return fmt.Errorf("reuse: attach cbpf: %w", err)
	}
	if setErr != nil {
		return fmt.Errorf("reuse: attach cbpf: setsockopt SO_ATTACH_REUSEPORT_CBPF: %w", setErr)
	}
	return nil
}
