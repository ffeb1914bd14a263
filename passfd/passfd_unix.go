//go:build unix

package passfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Framing header: the first byte of every datagram passfd sends.
//
//	0x00  a whole message in one datagram: fds plus payload
//	0x01  first datagram of several: fds only, more follow
//	0x03  a middle datagram: fds only, more follow
//	0x02  last datagram of several: fds plus payload
//	0x06  abort: the sender gave up mid-message; no fds, no payload
//
// The continuation bit lets Recv tell a message start from the tail of a
// message whose head an earlier, failed Recv consumed.
const (
	frameMore  byte = 1 << 0 // more datagrams of this message follow
	frameCont  byte = 1 << 1 // this datagram continues a message
	frameAbort byte = 1 << 2 // the sender abandoned the message (always with frameCont)
)

func validHeader(h byte) bool {
	switch h {
	case 0, frameMore, frameCont | frameMore, frameCont, frameCont | frameAbort:
		return true
	}
	return false
}

// Control message layout. Every unix Cmsghdr is {Len; Level int32; Type
// int32} where Len is 4 or 8 bytes, and the data starts at CmsgLen(0), which
// is the header size rounded up to the platform's cmsg alignment. Decoding
// through byte offsets rather than a *unix.Cmsghdr cast keeps the parser
// free of alignment assumptions about the buffer it is handed.
var (
	cmsgLenSize = unix.SizeofCmsghdr - 8
	cmsgHdrLen  = unix.CmsgLen(0)
	maxOOB      = unix.CmsgSpace(4 * MaxFDsPerMessage)
)

var ne = binary.NativeEndian

// msgBuf holds the per-call buffers of Send and Recv. They are pooled so the
// hot path (one fd, a small payload) allocates nothing but the fd slice that
// Recv hands to its caller.
type msgBuf struct {
	data []byte
	oob  []byte
}

var msgBufPool = sync.Pool{New: func() any {
	return &msgBuf{data: make([]byte, 512), oob: make([]byte, maxOOB)}
}}

func getMsgBuf(dataLen int) *msgBuf {
	mb := msgBufPool.Get().(*msgBuf)
	if cap(mb.data) < dataLen {
		mb.data = make([]byte, dataLen)
	}
	mb.data = mb.data[:dataLen]
	return mb
}

func putMsgBuf(mb *msgBuf) { msgBufPool.Put(mb) }

func closeFD(fd int) { _ = unix.Close(fd) }

// CloseAll closes every fd in fds, ignoring errors. Negative values are
// skipped.
func CloseAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			closeFD(fd)
		}
	}
}

// Send writes payload and fds to c as one logical message. See the package
// documentation for the framing and for ownership: Send never closes fds,
// and the caller must keep them open until Send returns.
//
// c must keep message boundaries (SOCK_SEQPACKET or SOCK_DGRAM). Messages
// with more than MaxFDsPerMessage fds take several datagrams; Sends of such
// messages on one connection must not run concurrently.
func Send(c *net.UnixConn, payload []byte, fds []int) error {
	if c == nil {
		return newError("sendmsg", "nil *net.UnixConn", os.ErrInvalid)
	}
	if len(payload) > MaxPayload {
		return newError("sendmsg", fmt.Sprintf("%d-byte payload, limit %d", len(payload), MaxPayload), ErrTooLarge)
	}
	// The kernel would reject a bad fd with EBADF too, but only after the
	// earlier datagrams of a batch went out; an int that does not fit the
	// wire's int32 would not be rejected at all.
	for _, fd := range fds {
		if fd < 0 || fd > math.MaxInt32 {
			return newError("sendmsg", fmt.Sprintf("fd %d", fd), unix.EBADF)
		}
	}

	mb := getMsgBuf(1 + len(payload))
	defer putMsgBuf(mb)
	total := max(1, (len(fds)+MaxFDsPerMessage-1)/MaxFDsPerMessage)
	var hdr byte
	for i := 0; ; i++ {
		last := len(fds) <= MaxFDsPerMessage
		chunk, data := fds, mb.data[:1]
		if last {
			hdr &^= frameMore
			data = mb.data[:1+len(payload)]
			copy(data[1:], payload)
		} else {
			hdr |= frameMore
			chunk = fds[:MaxFDsPerMessage]
		}
		data[0] = hdr
		if err := writeMsg(c, data, putRights(mb.oob, chunk)); err != nil {
			if i == 0 {
				return newError("sendmsg", "", err)
			}
			// The peer holds the first datagrams of this message. Tell it
			// to drop them, or it would glue them to our next message.
			detail := fmt.Sprintf("datagram %d of %d", i+1, total)
			mb.data[0] = frameCont | frameAbort
			if aerr := writeMsg(c, mb.data[:1], nil); aerr != nil {
				return newError("sendmsg", detail+" (the abort marker failed too: the peer is left mid-message, close the connection)", err, aerr)
			}
			return newError("sendmsg", detail+" (message aborted)", err)
		}
		if last {
			return nil
		}
		fds = fds[MaxFDsPerMessage:]
		hdr = frameCont
	}
}

// writeMsg sends one datagram. WriteMsgUnix goes through the netpoller: a
// full socket buffer parks the goroutine instead of blocking a thread, and
// the socket is never switched to blocking mode.
func writeMsg(c *net.UnixConn, data, oob []byte) error {
	n, oobn, err := c.WriteMsgUnix(data, oob, nil)
	if err == nil && (n != len(data) || oobn != len(oob)) {
		err = io.ErrShortWrite
	}
	return err
}

// putRights encodes fds as one SCM_RIGHTS control message in buf, which must
// hold maxOOB bytes, and returns the encoded part (nil when fds is empty).
func putRights(buf []byte, fds []int) []byte {
	if len(fds) == 0 {
		return nil
	}
	b := buf[:unix.CmsgSpace(4*len(fds))]
	clear(b)
	putCmsgLen(b, unix.CmsgLen(4*len(fds)))
	ne.PutUint32(b[cmsgLenSize:], uint32(int32(unix.SOL_SOCKET)))
	ne.PutUint32(b[cmsgLenSize+4:], uint32(int32(unix.SCM_RIGHTS)))
	d := b[cmsgHdrLen:]
	for i, fd := range fds {
		ne.PutUint32(d[4*i:], uint32(int32(fd)))
	}
	return b
}

func putCmsgLen(b []byte, n int) {
	if cmsgLenSize == 8 {
		ne.PutUint64(b, uint64(n))
	} else {
		ne.PutUint32(b, uint32(n))
	}
}

func cmsgLen(b []byte) uint64 {
	if cmsgLenSize == 8 {
		return ne.Uint64(b)
	}
	return uint64(ne.Uint32(b))
}

// Recv reads one logical message from c: the payload into buf and up to
// maxFDs fds. It returns the payload length and the fds, which the caller
// then owns; every one has FD_CLOEXEC set.
//
// On any error Recv has closed every fd it received, from every datagram of
// the message, and returns nil fds. It returns io.EOF, unwrapped, when the
// peer closed the connection between messages. After ErrTruncated,
// ErrTooLarge or ErrAborted the connection is positioned at the next
// message (Recv reads the rest of a failed multi-datagram message and
// discards it); after ErrMalformed or a read error it may not be.
//
// Recv blocks until a whole message has arrived or c's read deadline
// (SetReadDeadline) expires; it parks in Go's netpoller, not in a thread.
func Recv(c *net.UnixConn, buf []byte, maxFDs int) (n int, fds []int, err error) {
	if c == nil {
		return 0, nil, newError("recvmsg", "nil *net.UnixConn", os.ErrInvalid)
	}
	if maxFDs < 0 {
		return 0, nil, newError("recvmsg", fmt.Sprintf("maxFDs %d", maxFDs), os.ErrInvalid)
	}
	// One byte more than the caller's buffer for the framing header; a
	// larger datagram comes back with MSG_TRUNC.
	mb := getMsgBuf(min(len(buf), MaxPayload) + 1)
	defer putMsgBuf(mb)
	// got accumulates every fd received for this message. The deferred
	// cleanup closes it on every error return; it cannot look at the named
	// result, which each "return 0, nil, err" has already set to nil.
	var got []int
	defer func() {
		if err != nil {
			CloseAll(got)
		}
	}()

	for first := true; ; first = false {
		// Size the control buffer for what the caller still accepts: when
		// the peer sends more, the kernel sets MSG_CTRUNC and drops (closes)
		// the fds that did not fit instead of installing them in our table.
		var oob []byte
		if want := min(maxFDs-len(got), MaxFDsPerMessage); want > 0 {
			oob = mb.oob[:unix.CmsgSpace(4*want)]
		}
		// On Linux ReadMsgUnix passes MSG_CMSG_CLOEXEC, so no fd is ever
		// visible without FD_CLOEXEC to a concurrent fork+exec.
		dn, oobn, flags, _, rerr := c.ReadMsgUnix(mb.data, oob)
		start := len(got)
		var perr error
		if oobn > 0 && oobn <= len(oob) {
			got, perr = appendRights(got, oob[:oobn], closeFD)
			markCloexec(got[start:])
		}

		if rerr != nil {
			// On a SOCK_SEQPACKET socket Go reports a zero-length read as
			// io.EOF, and passfd never sends an empty datagram.
			if errors.Is(rerr, io.EOF) {
				switch {
				case oobn > 0:
					return 0, nil, newError("recvmsg", "empty datagram with fds", ErrMalformed)
				case first:
					return 0, nil, io.EOF
				}
				return 0, nil, newError("recvmsg", "peer closed the connection in the middle of a message", io.ErrUnexpectedEOF)
			}
			return 0, nil, newError("recvmsg", "", rerr)
		}
		if dn <= 0 {
			return 0, nil, newError("recvmsg", "empty datagram", ErrMalformed)
		}
		hdr := mb.data[0]
		if !validHeader(hdr) {
			return 0, nil, newError("recvmsg", fmt.Sprintf("unknown framing header %#02x", hdr), ErrMalformed)
		}

		if err := checkDatagram(hdr, first, dn, flags, len(got)-start, len(got), maxFDs, perr); err != nil {
			if hdr&frameMore != 0 {
				drain(c, mb)
				return 0, nil, err
			}
			if errors.Is(err, ErrTruncated) && flags&unix.MSG_TRUNC == 0 {
				// The payload arrived whole; return it so the caller can
				// tell its peer which message lost its fds.
				return copy(buf, mb.data[1:dn]), nil, err
			}
			return 0, nil, err
		}
		if hdr&frameMore != 0 {
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			return 0, nil, newError("recvmsg", fmt.Sprintf("payload larger than %d bytes", len(mb.data)-1), ErrTooLarge)
		}
		return copy(buf, mb.data[1:dn]), got, nil
	}
}

// checkDatagram validates one datagram of a message whose header byte is
// known to be valid.
func checkDatagram(hdr byte, first bool, dn, flags, got, total, maxFDs int, perr error) error {
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		return newError("recvmsg", fmt.Sprintf("%d fds installed, maxFDs %d", total, maxFDs), ErrTruncated)
	case perr != nil:
		return newError("recvmsg", "", perr)
	case first && hdr&frameCont != 0:
		return newError("recvmsg", "continuation datagram without a message start (did an earlier Recv fail mid-message?)", ErrMalformed)
	case !first && hdr&frameCont == 0:
		return newError("recvmsg", "message start while the previous message was unfinished", ErrMalformed)
	case hdr&frameAbort != 0:
		return newError("recvmsg", "", ErrAborted)
	case total > maxFDs:
		return newError("recvmsg", fmt.Sprintf("peer sent more than maxFDs %d", maxFDs), ErrTruncated)
	case hdr&frameMore != 0 && (dn != 1 || flags&unix.MSG_TRUNC != 0):
		return newError("recvmsg", "payload in a datagram that is not the last", ErrMalformed)
	case hdr&frameMore != 0 && got == 0:
		return newError("recvmsg", "datagram without fds that is not the last", ErrMalformed)
	}
	return nil
}

// drain reads and discards the rest of a message that failed after a
// datagram announcing more, closing every fd, so that the next Recv starts at
// a message boundary. A read error ends it: the caller's error is the one
// that matters, and the read error will show up again on the next Recv.
func drain(c *net.UnixConn, mb *msgBuf) {
	var scratch []int
	for {
		dn, oobn, _, _, err := c.ReadMsgUnix(mb.data[:1], mb.oob)
		if oobn > 0 && oobn <= len(mb.oob) {
			scratch, _ = appendRights(scratch[:0], mb.oob[:oobn], closeFD)
			CloseAll(scratch)
		}
		if err != nil || dn < 1 {
			return
		}
		if h := mb.data[0]; !validHeader(h) || h&frameMore == 0 {
			return
		}
	}
}

// ParseRights decodes the out-of-band bytes of one recvmsg into fds. It
// accepts only SCM_RIGHTS control messages. On error it closes every fd it
// found in any SCM_RIGHTS message and returns nil fds and an error wrapping
// ErrMalformed.
func ParseRights(oob []byte) ([]int, error) {
	return parseRights(oob, closeFD)
}

// parseRights is ParseRights with the close operation injected, so the fuzz
// target can record closes instead of closing fds it does not own.
func parseRights(oob []byte, closeFD func(int)) ([]int, error) {
	fds, err := appendRights(nil, oob, closeFD)
	if err != nil {
		return nil, err
	}
	return fds, nil
}

// appendRights appends the fds of every SCM_RIGHTS control message in oob to
// dst. On error it passes each fd it found in oob (not those already in dst)
// to closeFD and returns dst unchanged. It never reads outside oob, whatever
// the lengths in the headers claim.
func appendRights(dst []int, oob []byte, closeFD func(int)) ([]int, error) {
	if dst == nil && len(oob) > cmsgHdrLen {
		dst = make([]int, 0, (len(oob)-cmsgHdrLen)/4)
	}
	start := len(dst)
	var err error
	for rest := oob; len(rest) > 0; {
		if len(rest) < unix.SizeofCmsghdr {
			err = errMalformedf("%d trailing bytes, shorter than a control message header", len(rest))
			break
		}
		l := cmsgLen(rest)
		if l < uint64(cmsgHdrLen) || l > uint64(len(rest)) {
			err = errMalformedf("control message length %d outside [%d, %d]", l, cmsgHdrLen, len(rest))
			break
		}
		level := int32(ne.Uint32(rest[cmsgLenSize:]))
		typ := int32(ne.Uint32(rest[cmsgLenSize+4:]))
		data := rest[cmsgHdrLen:l]
		if level == unix.SOL_SOCKET && typ == unix.SCM_RIGHTS {
			if len(data)%4 != 0 && err == nil {
				err = errMalformedf("SCM_RIGHTS data of %d bytes, not a whole number of fds", len(data))
			}
			for i := 0; i+4 <= len(data); i += 4 {
				fd := int(int32(ne.Uint32(data[i:])))
				if fd < 0 {
					if err == nil {
						err = errMalformedf("negative fd %d in SCM_RIGHTS", fd)
					}
					continue
				}
				dst = append(dst, fd)
			}
		} else if err == nil {
			err = errMalformedf("control message level %d type %d is not SCM_RIGHTS", level, typ)
		}
		// The kernel pads each message to the cmsg alignment except,
		// possibly, the last one when the buffer ended first.
		rest = rest[min(unix.CmsgSpace(int(l)-cmsgHdrLen), len(rest)):]
	}
	if err != nil {
		for _, fd := range dst[start:] {
			closeFD(fd)
		}
		return dst[:start], err
	}
	return dst, nil
}

func errMalformedf(format string, args ...any) error {
	return newError("parse rights", fmt.Sprintf(format, args...), ErrMalformed)
}

// Socketpair returns a connected AF_UNIX SOCK_SEQPACKET pair, both ends
// close-on-exec. local is in Go's netpoller (non-blocking); remote is a
// blocking *os.File meant for exec.Cmd.ExtraFiles, which clears close-on-exec
// on the child's copy only. The caller owns both.
//
// Where the kernel has no SOCK_SEQPACKET for AF_UNIX the error wraps
// ErrUnsupported.
func Socketpair() (local *net.UnixConn, remote *os.File, err error) {
	fds, err := socketpair()
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EPROTOTYPE) {
			return nil, nil, newError("socketpair", "AF_UNIX SOCK_SEQPACKET", err, ErrUnsupported)
		}
		return nil, nil, newError("socketpair", "AF_UNIX SOCK_SEQPACKET", err)
	}
	// net.FileConn dups the fd (close-on-exec) and makes the dup
	// non-blocking; our original must be closed or it leaks.
	lf := os.NewFile(uintptr(fds[0]), "passfd-local")
	conn, err := net.FileConn(lf)
	lf.Close()
	if err != nil {
		closeFD(fds[1])
		return nil, nil, newError("socketpair", "", err)
	}
	return conn.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "passfd-remote"), nil
}

// FileConn turns an inherited socket file, such as os.NewFile(3, "ipc"),
// into a *net.UnixConn. It closes f on every path: net.FileConn works on a
// dup, so keeping f would leak one fd. The socket must keep message
// boundaries (SOCK_SEQPACKET or SOCK_DGRAM).
func FileConn(f *os.File) (*net.UnixConn, error) {
	if f == nil {
		return nil, newError("fileconn", "nil *os.File", os.ErrInvalid)
	}
	name := f.Name()
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, newError("fileconn", "", err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, newError("fileconn", fmt.Sprintf("%s is a %s socket, not a unix one", name, conn.LocalAddr().Network()), os.ErrInvalid)
	}
	typ, err := socketType(uc)
	if err != nil {
		uc.Close()
		return nil, newError("fileconn", name, err)
	}
	if typ != unix.SOCK_SEQPACKET && typ != unix.SOCK_DGRAM {
		uc.Close()
		return nil, newError("fileconn", fmt.Sprintf("%s: socket type %d does not keep message boundaries (need SOCK_SEQPACKET or SOCK_DGRAM)", name, typ), os.ErrInvalid)
	}
	return uc, nil
}

// socketType reads SO_TYPE through SyscallConn, which, unlike
// (*os.File).Fd, leaves the socket non-blocking.
func socketType(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var typ int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("getsockopt SO_TYPE", serr)
	}
	return typ, nil
}
