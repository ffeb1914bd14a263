package sdnotify

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxAddr is sun_path's size: an abstract name is a NUL (written '@')
	// and up to 107 more bytes, with no terminator.
	maxAddr = 108
	// scmMaxFD is the kernel's limit on descriptors in one SCM_RIGHTS.
	scmMaxFD = 253
	// sendTimeout bounds a send to a receiver whose queue stays full.
	sendTimeout = 5 * time.Second
)

// Listen opens a receiver at a fresh abstract address
// "@sockshare/<this pid>/<name>/<random>"; name (may be empty) only helps
// a reader of ss(8) or /proc/net/unix tell receivers apart. The socket is
// close-on-exec: the worker gets only the address, never the socket.
func Listen(name string) (*Receiver, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	addr := fmt.Sprintf("@sockshare/%d/%x", os.Getpid(), rnd)
	if name != "" {
		addr = fmt.Sprintf("@sockshare/%d/%s/%x", os.Getpid(), name, rnd)
	}
	if strings.IndexByte(name, 0) >= 0 || len(addr) > maxAddr {
		return nil, fmt.Errorf("%w: %q: a NUL byte, or longer than %d bytes as %q", ErrBadName, name, maxAddr, addr)
	}
	// SO_PASSCRED goes on before bind, so no datagram can arrive without
	// credentials.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		}); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("setsockopt SO_PASSCRED: %w", err)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "unixgram", addr)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: listen %s: %w", addr, err)
	}
	r := newReceiver(pc.(*net.UnixConn), addr)
	go r.read()
	return r, nil
}

// read runs on its own goroutine until the socket is closed.
func (r *Receiver) read() {
	defer close(r.done)
	buf := make([]byte, MaxDatagram)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*scmMaxFD))
	for {
		// Go's ReadMsgUnix passes MSG_CMSG_CLOEXEC, so received
		// descriptors are never inherited by a child forked before
		// closeRights closes them.
		n, oobn, flags, _, err := r.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.mu.Lock()
				r.readErr = err
				r.mu.Unlock()
			}
			return
		}
		pid, nfds := parseControl(oob[:oobn])
		if nfds > 0 {
			r.count(func(s *Stats) { s.ClosedFDs += uint64(nfds) })
		}
		switch {
		case flags&unix.MSG_TRUNC != 0:
			r.count(func(s *Stats) { s.Oversize++ })
		case pid <= 0:
			r.count(func(s *Stats) { s.NoCreds++ })
		default:
			m := Parse(buf[:n])
			m.PID = pid
			r.receive(m)
		}
	}
}

// parseControl returns the sender's pid from SCM_CREDENTIALS (0 if none)
// and closes every descriptor of SCM_RIGHTS, returning how many.
func parseControl(oob []byte) (pid, nfds int) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, 0
	}
	for i := range cmsgs {
		c := &cmsgs[i]
		if c.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch c.Header.Type {
		case unix.SCM_CREDENTIALS:
			if cred, err := unix.ParseUnixCredentials(c); err == nil {
				pid = int(cred.Pid)
			}
		case unix.SCM_RIGHTS:
			fds, _ := unix.ParseUnixRights(c)
			for _, fd := range fds {
				unix.Close(fd)
			}
			nfds += len(fds)
		}
	}
	return pid, nfds
}

// NotifyTo sends state as one datagram to addr: an absolute path, or an
// abstract name written with a leading '@'. A receiver whose queue stays
// full makes it fail after 5 seconds rather than block.
func NotifyTo(addr, state string) error {
	if addr == "" || (addr[0] != '/' && addr[0] != '@') {
		return fmt.Errorf("%w: %q", ErrBadAddr, addr)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: notify %s: %w", addr, err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: notify %s: %w", addr, err)
	}
	return nil
}

// MonotonicUsec is CLOCK_MONOTONIC in microseconds, the value of
// MONOTONIC_USEC that systemd wants with RELOADING=1.
func MonotonicUsec() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return uint64(ts.Sec)*1_000_000 + uint64(ts.Nsec)/1_000
}
