//go:build unix

package passfd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSendRecv(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	r, w := pipes(t, 2)

	if err := Send(a, []byte("hello"), w); err != nil {
		t.Fatalf("Send: %v", err)
	}
	for _, fd := range w {
		if !isOpen(fd) {
			t.Errorf("Send closed the caller's fd %d", fd)
		}
	}
	buf := make([]byte, 64)
	n, fds, err := Recv(b, buf, 4)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	defer CloseAll(fds)
	if got := string(buf[:n]); got != "hello" {
		t.Errorf("payload %q, want %q", got, "hello")
	}
	if len(fds) != 2 {
		t.Fatalf("got %d fds, want 2", len(fds))
	}
	// The received fds are live: a byte written through each comes out of
	// the matching original read end.
	for i, fd := range fds {
		msg := []byte{'a' + byte(i)}
		if _, err := unix.Write(fd, msg); err != nil {
			t.Fatalf("write to received fd: %v", err)
		}
		got := make([]byte, 1)
		if _, err := unix.Read(r[i], got); err != nil || got[0] != msg[0] {
			t.Errorf("pipe %d: read %q, %v; want %q", i, got, err, msg)
		}
	}
}

func TestSendRecvShapes(t *testing.T) {
	_, w := pipes(t, 1)
	for _, tc := range []struct {
		name    string
		payload []byte
		fds     []int
		bufLen  int
	}{
		{"payload only", []byte("no fds"), nil, 64},
		{"fds only", nil, w, 64},
		{"nothing", nil, nil, 64},
		{"zero-length buffer", nil, w, 0},
		{"payload fills buffer", bytes.Repeat([]byte("x"), 64), w, 64},
		{"MaxPayload", bytes.Repeat([]byte("y"), MaxPayload), w, MaxPayload},
		{"buffer larger than MaxPayload", []byte("z"), w, 2 * MaxPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			a, b := pair(t)
			if err := Send(a, tc.payload, tc.fds); err != nil {
				t.Fatalf("Send: %v", err)
			}
			buf := make([]byte, tc.bufLen)
			n, fds, err := Recv(b, buf, 1)
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			CloseAll(fds)
			if !bytes.Equal(buf[:n], tc.payload) {
				t.Errorf("payload of %d bytes differs from the %d sent", n, len(tc.payload))
			}
			if len(fds) != len(tc.fds) {
				t.Errorf("got %d fds, want %d", len(fds), len(tc.fds))
			}
			if len(tc.fds) == 0 && fds != nil {
				t.Errorf("fds = %v, want nil", fds)
			}
		})
	}
}

// TestRecvCloseOnExec checks that Recv installs fds close-on-exec, even
// when the sender's copy is not, and on Linux that it does so atomically:
// the body runs in a child process whose every recvmsg without
// MSG_CMSG_CLOEXEC fails with EPERM (inCloexecChild). Checking FD_CLOEXEC
// after Recv returns only, as this test once did, passes just as well when
// the flag is set by an fcntl after recvmsg, which a concurrent fork+exec
// can beat, and so tested Go's ReadMsgUnix rather than what passfd
// promises. It sends one message of one fd and one of two datagrams, whose
// continuation Recv reads with a second recvmsg.
func TestRecvCloseOnExec(t *testing.T) {
	if inCloexecChild(t) {
		return
	}
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 1)
	inheritable, err := unix.Dup(w[0]) // dup clears FD_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(inheritable)
	if flags, _ := unix.FcntlInt(uintptr(inheritable), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Fatal("dup kept FD_CLOEXEC; the test needs an inheritable fd")
	}

	batch := make([]int, MaxFDsPerMessage+1)
	for i := range batch {
		batch[i] = inheritable
	}
	for _, sent := range [][]int{{inheritable}, batch} {
		done := sendAsync(a, nil, sent)
		_, fds, err := Recv(b, nil, len(sent))
		if serr := <-done; serr != nil {
			t.Fatalf("Send of %d fds: %v", len(sent), serr)
		}
		if errors.Is(err, unix.EPERM) {
			t.Fatalf("Recv of %d fds: %v: it called recvmsg without MSG_CMSG_CLOEXEC, so a concurrent fork+exec can inherit what it receives", len(sent), err)
		}
		if err != nil {
			t.Fatalf("Recv of %d fds: %v", len(sent), err)
		}
		for _, fd := range fds {
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err != nil {
				t.Fatalf("fcntl F_GETFD: %v", err)
			}
			if flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("received fd %d (message of %d fds) lacks FD_CLOEXEC (flags %#x)", fd, len(sent), flags)
			}
		}
		CloseAll(fds)
	}
}

func TestBatches(t *testing.T) {
	const most = 3*MaxFDsPerMessage - 159 // 600
	needFDs(t, 3*most)
	_, w := pipes(t, most)
	for _, n := range []int{MaxFDsPerMessage - 1, MaxFDsPerMessage, MaxFDsPerMessage + 1, 2 * MaxFDsPerMessage, 2*MaxFDsPerMessage + 1, most} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			checkNoLeak(t)
			a, b := pair(t)
			roundTrip(t, a, b, fmt.Sprintf("batch of %d", n), w[:n])
			// And the connection is still in step.
			roundTrip(t, a, b, "after", w[:1])
		})
	}
}

func TestManyHandoffsNoLeak(t *testing.T) {
	const handoffs = 5000
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 1)
	done := make(chan error, 1)
	go func() {
		for i := range handoffs {
			if err := Send(a, []byte{byte(i)}, w); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, 1)
	for i := range handoffs {
		n, fds, err := Recv(b, buf, 1)
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if n != 1 || buf[0] != byte(i) || len(fds) != 1 {
			t.Fatalf("Recv %d: payload %v, %d fds", i, buf[:n], len(fds))
		}
		CloseAll(fds)
	}
	if err := <-done; err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func TestTruncatedByMaxFDs(t *testing.T) {
	needFDs(t, 3*600)
	_, w := pipes(t, 600)
	for _, tc := range []struct {
		sent, maxFDs int
	}{
		{1, 0},
		{2, 1},  // on 64-bit the aligned buffer holds 2: Recv counts them
		{10, 1}, // the kernel sets MSG_CTRUNC
		{254, 253},
		{600, 300}, // fails in the second of three datagrams
		{600, 253}, // fails in the second datagram, with no room at all
	} {
		t.Run(fmt.Sprintf("%d fds, maxFDs %d", tc.sent, tc.maxFDs), func(t *testing.T) {
			checkNoLeak(t)
			a, b := pair(t)
			done := sendAsync(a, []byte("too many"), w[:tc.sent])
			buf := make([]byte, 64)
			n, fds, err := Recv(b, buf, tc.maxFDs)
			if serr := <-done; serr != nil {
				t.Fatalf("Send: %v", serr)
			}
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("Recv: %v, want ErrTruncated", err)
			}
			if fds != nil {
				t.Errorf("Recv returned fds=%v with an error", fds)
			}
			// When the failure is in the last datagram, the one with the
			// payload, the payload comes back with the error so the
			// receiver can say which message lost its fds; a failure in
			// an earlier datagram discards the whole message.
			last := (tc.sent + MaxFDsPerMessage - 1) / MaxFDsPerMessage
			failing := 1
			for min(failing*MaxFDsPerMessage, tc.sent) <= tc.maxFDs {
				failing++
			}
			wantN := 0
			if failing == last {
				wantN = len("too many")
			}
			if n != wantN || string(buf[:n]) != "too many"[:wantN] {
				t.Errorf("Recv returned n=%d payload %q with ErrTruncated; want n=%d", n, buf[:n], wantN)
			}
			// Recv read the whole message: the next one arrives intact.
			roundTrip(t, a, b, "next", w[:1])
		})
	}
}

func TestTooLarge(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 3)

	if err := Send(a, []byte("ten bytes!"), w); err != nil {
		t.Fatalf("Send: %v", err)
	}
	n, fds, err := Recv(b, make([]byte, 4), 3)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Recv into a 4-byte buffer: %v, want ErrTooLarge", err)
	}
	if n != 0 || fds != nil {
		t.Errorf("Recv returned n=%d fds=%v with an error", n, fds)
	}
	roundTrip(t, a, b, "fits", w)

	err = Send(a, make([]byte, MaxPayload+1), w)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Send of MaxPayload+1 bytes: %v, want ErrTooLarge", err)
	}
	// Nothing went out: the next message is the next one received.
	roundTrip(t, a, b, "still in step", w[:1])
}

func TestEOF(t *testing.T) {
	t.Run("between messages", func(t *testing.T) {
		checkNoLeak(t)
		a, b := pair(t)
		a.Close()
		_, fds, err := Recv(b, make([]byte, 8), 1)
		if err != io.EOF || fds != nil {
			t.Fatalf("Recv after peer close: %v, %v; want io.EOF, nil", fds, err)
		}
	})
	t.Run("mid-message", func(t *testing.T) {
		checkNoLeak(t)
		a, b := pair(t)
		_, w := pipes(t, 4)
		rawSend(t, a, []byte{frameMore}, w)
		a.Close()
		_, fds, err := Recv(b, make([]byte, 8), 10)
		if !errors.Is(err, io.ErrUnexpectedEOF) || fds != nil {
			t.Fatalf("Recv: %v, %v; want io.ErrUnexpectedEOF, nil", fds, err)
		}
	})
}

// TestMalformed feeds Recv datagrams that break the framing and checks that
// every fd that arrived is closed and, where the framing allows, that the
// connection is back in step afterwards.
func TestMalformed(t *testing.T) {
	type datagram struct {
		data []byte
		fds  int
	}
	for _, tc := range []struct {
		name    string
		dgrams  []datagram
		want    error
		inStep  bool // the next message is received intact
		maxFDs  int
		passcrd bool
	}{
		{"unknown header", []datagram{{[]byte{0x80, 'x'}, 2}}, ErrMalformed, false, 10, false},
		{"payload before the last datagram", []datagram{{[]byte{frameMore, 'x'}, 2}, {[]byte{frameCont, 'y'}, 2}}, ErrMalformed, true, 10, false},
		{"no fds before the last datagram", []datagram{{[]byte{frameMore}, 0}, {[]byte{frameCont}, 2}}, ErrMalformed, true, 10, false},
		{"continuation first", []datagram{{[]byte{frameCont}, 2}}, ErrMalformed, true, 10, false},
		{"tail of an earlier message", []datagram{{[]byte{frameCont | frameMore}, 2}, {[]byte{frameCont}, 2}}, ErrMalformed, true, 10, false},
		{"new message before the last datagram", []datagram{{[]byte{frameMore}, 2}, {[]byte{0}, 2}}, ErrMalformed, true, 10, false},
		{"aborted", []datagram{{[]byte{frameMore}, 3}, {[]byte{frameCont | frameAbort}, 0}}, ErrAborted, true, 10, false},
		{"credentials beside the rights", []datagram{{[]byte{0, 'x'}, 2}}, ErrMalformed, true, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.passcrd && runtime.GOOS != "linux" {
				t.Skip("SO_PASSCRED is Linux's")
			}
			checkNoLeak(t)
			a, b := pair(t)
			_, w := pipes(t, 3)
			if tc.passcrd {
				setPassCred(t, b)
			}
			for _, d := range tc.dgrams {
				rawSend(t, a, d.data, w[:d.fds])
			}
			n, fds, err := Recv(b, make([]byte, 8), tc.maxFDs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Recv: %v, want %v", err, tc.want)
			}
			if n != 0 || fds != nil {
				t.Errorf("Recv returned n=%d fds=%v with an error", n, fds)
			}
			if tc.inStep && !tc.passcrd {
				roundTrip(t, a, b, "next", w[:1])
			}
		})
	}
}

// setPassCred makes the kernel attach SCM_CREDENTIALS to every message c
// receives, a control message passfd does not accept.
func setPassCred(t *testing.T, c *net.UnixConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, passCredOpt, 1)
	}); err != nil || serr != nil {
		t.Fatalf("setsockopt SO_PASSCRED: %v %v", err, serr)
	}
}

// TestDatagramSocket runs Send and Recv over SOCK_DGRAM, including an empty
// datagram with fds, which SOCK_SEQPACKET cannot carry from Go (the runtime
// pads it to one byte).
func TestDatagramSocket(t *testing.T) {
	checkNoLeak(t)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(sp[0])
	unix.CloseOnExec(sp[1])
	a, err := FileConn(os.NewFile(uintptr(sp[0]), "dgram-a"))
	if err != nil {
		t.Fatalf("FileConn: %v", err)
	}
	defer a.Close()
	b, err := FileConn(os.NewFile(uintptr(sp[1]), "dgram-b"))
	if err != nil {
		t.Fatalf("FileConn: %v", err)
	}
	defer b.Close()
	_, w := pipes(t, 2)

	roundTrip(t, a, b, "over dgram", w)

	rawSend(t, a, nil, w)
	_, fds, err := Recv(b, make([]byte, 8), 2)
	if !errors.Is(err, ErrMalformed) || fds != nil {
		t.Fatalf("Recv of an empty datagram with fds: %v, %v; want ErrMalformed", fds, err)
	}
	roundTrip(t, a, b, "next", w)
}

func TestSendAbortsOnBadFD(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 1)
	fds := make([]int, 2*MaxFDsPerMessage+10)
	for i := range fds {
		fds[i] = w[0]
	}
	fds[MaxFDsPerMessage+5] = 1_000_000_000 // not open: EBADF in the second datagram

	done := sendAsync(a, []byte("x"), fds)
	_, got, err := Recv(b, make([]byte, 8), len(fds))
	if !errors.Is(err, ErrAborted) || got != nil {
		t.Fatalf("Recv: %v, %v; want ErrAborted", got, err)
	}
	serr := <-done
	if !errors.Is(serr, unix.EBADF) {
		t.Fatalf("Send: %v, want EBADF", serr)
	}
	if !strings.Contains(serr.Error(), "datagram 2 of 3") {
		t.Errorf("Send error %q does not say which datagram failed", serr)
	}
	roundTrip(t, a, b, "next", w)
}

func TestInvalidArguments(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	if err := Send(nil, nil, nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Send(nil conn): %v", err)
	}
	if _, _, err := Recv(nil, nil, 0); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Recv(nil conn): %v", err)
	}
	if _, _, err := Recv(b, nil, -1); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Recv(maxFDs -1): %v", err)
	}
	if err := Send(a, nil, []int{-1}); !errors.Is(err, unix.EBADF) {
		t.Errorf("Send(fd -1): %v, want EBADF", err)
	}
	if _, err := FileConn(nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("FileConn(nil): %v", err)
	}
	roundTrip(t, a, b, "nothing was sent", nil)
}

func TestRecvDeadline(t *testing.T) {
	checkNoLeak(t)
	_, b := pair(t)
	b.SetReadDeadline(time.Now().Add(-time.Second))
	_, fds, err := Recv(b, make([]byte, 8), 1)
	if !errors.Is(err, os.ErrDeadlineExceeded) || fds != nil {
		t.Fatalf("Recv past the deadline: %v, %v", fds, err)
	}
}

func TestSocketpair(t *testing.T) {
	checkNoLeak(t)
	local, remote, err := Socketpair()
	if err != nil {
		t.Fatalf("Socketpair: %v", err)
	}
	defer local.Close()
	defer remote.Close()

	rc, err := local.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var localFD, localFL, typ int
	rc.Control(func(fd uintptr) {
		localFD, _ = unix.FcntlInt(fd, unix.F_GETFD, 0)
		localFL, _ = unix.FcntlInt(fd, unix.F_GETFL, 0)
		typ, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	})
	if localFD&unix.FD_CLOEXEC == 0 {
		t.Error("local end lacks FD_CLOEXEC")
	}
	if localFL&unix.O_NONBLOCK == 0 {
		t.Error("local end is blocking; it should be in the netpoller")
	}
	if typ != unix.SOCK_SEQPACKET {
		t.Errorf("socket type %d, want SOCK_SEQPACKET", typ)
	}

	frc, err := remote.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var remoteFD, remoteFL int
	frc.Control(func(fd uintptr) {
		remoteFD, _ = unix.FcntlInt(fd, unix.F_GETFD, 0)
		remoteFL, _ = unix.FcntlInt(fd, unix.F_GETFL, 0)
	})
	if remoteFD&unix.FD_CLOEXEC == 0 {
		t.Error("remote end lacks FD_CLOEXEC")
	}
	if remoteFL&unix.O_NONBLOCK != 0 {
		t.Error("remote end is non-blocking; a child inheriting it expects blocking")
	}
}

func TestFileConn(t *testing.T) {
	t.Run("closes the file", func(t *testing.T) {
		checkNoLeak(t)
		local, remote, err := Socketpair()
		if err != nil {
			t.Fatal(err)
		}
		defer local.Close()
		c, err := FileConn(remote)
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		defer c.Close()
		if err := remote.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("the file passed to FileConn is still open (Close: %v)", err)
		}
		_, w := pipes(t, 1)
		roundTrip(t, local, c, "via FileConn", w)
		roundTrip(t, c, local, "and back", w)
	})
	t.Run("rejects a stream socket", func(t *testing.T) {
		checkNoLeak(t)
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(sp[1])
		f := os.NewFile(uintptr(sp[0]), "stream")
		if _, err := FileConn(f); !errors.Is(err, os.ErrInvalid) || !strings.Contains(err.Error(), "message boundaries") {
			t.Errorf("FileConn(stream socket): %v", err)
		}
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("FileConn left the file open on error (Close: %v)", err)
		}
	})
	t.Run("rejects a pipe", func(t *testing.T) {
		checkNoLeak(t)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := FileConn(r); err == nil {
			t.Error("FileConn(pipe) succeeded")
		}
		if err := r.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("FileConn left the file open on error (Close: %v)", err)
		}
	})
}

func TestErrors(t *testing.T) {
	const truncated = "passfd: control message truncated: the kernel dropped fds (receive buffer too small or RLIMIT_NOFILE reached)"
	if ErrTruncated.Error() != truncated {
		t.Errorf("ErrTruncated = %q, want %q", ErrTruncated, truncated)
	}
	for err, text := range map[error]string{
		ErrTooLarge:    "passfd: payload too large",
		ErrUnsupported: "passfd: fd passing over unix sockets: unsupported operation",
		ErrMalformed:   "passfd: malformed message",
		ErrAborted:     "passfd: message aborted by the sender",
	} {
		if err.Error() != text {
			t.Errorf("sentinel %q, want %q", err, text)
		}
	}
	if !errors.Is(ErrUnsupported, errors.ErrUnsupported) {
		t.Error("ErrUnsupported does not match errors.ErrUnsupported")
	}

	err := newError("recvmsg", "3 fds installed, maxFDs 1", ErrTruncated)
	want := "passfd: recvmsg: 3 fds installed, maxFDs 1: control message truncated: the kernel dropped fds (receive buffer too small or RLIMIT_NOFILE reached)"
	if err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
	nested := newError("recvmsg", "", errMalformedf("negative fd %d in SCM_RIGHTS", -1))
	if want := "passfd: recvmsg: parse rights: negative fd -1 in SCM_RIGHTS: malformed message"; nested.Error() != want {
		t.Errorf("nested error text %q, want %q", nested, want)
	}
	if !errors.Is(nested, ErrMalformed) {
		t.Error("nested error does not match ErrMalformed")
	}
}
