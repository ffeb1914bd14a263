//go:build unix

package passfd

import (
	"fmt"
	"net"
	"os"
	"testing"
)

func benchPair(b *testing.B) (a, c *net.UnixConn, fd int) {
	b.Helper()
	a, remote, err := Socketpair()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	c, err = FileConn(remote)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	// Any fd will do; not a socket, so the kernel's unix socket garbage
	// collector stays out of the measurement.
	f, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	rc.Control(func(u uintptr) { fd = int(u) })
	return a, c, fd
}

// BenchmarkPipelined measures fds per second when a sender goroutine keeps
// sending one fd per message while the receiver receives and closes them:
// sendmsg + recvmsg + close per fd, with the socket queue as the only
// flow control.
func BenchmarkPipelined(b *testing.B) {
	benchPipelined(b, 1)
}

// BenchmarkPipelinedBatch is BenchmarkPipelined with several fds per
// message, up to a full datagram.
func BenchmarkPipelinedBatch(b *testing.B) {
	for _, per := range []int{16, MaxFDsPerMessage} {
		b.Run(fmt.Sprintf("fds=%d", per), func(b *testing.B) { benchPipelined(b, per) })
	}
}

func benchPipelined(b *testing.B, per int) {
	a, c, fd := benchPair(b)
	fds := make([]int, per)
	for i := range fds {
		fds[i] = fd
	}
	msgs := (b.N + per - 1) / per
	sent := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range msgs {
			if err := Send(a, nil, fds); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for range msgs {
		_, got, err := Recv(c, nil, per)
		if err != nil {
			b.Fatalf("Recv: %v", err)
		}
		CloseAll(got)
	}
	if err := <-sent; err != nil {
		b.Fatalf("Send: %v", err)
	}
	b.StopTimer()
	b.ReportMetric(float64(msgs*per)/b.Elapsed().Seconds(), "fds/s")
}

// BenchmarkRoundTrip measures one handoff at a time: send one fd, wait for
// the receiver's one-byte acknowledgement (Node's cluster model).
func BenchmarkRoundTrip(b *testing.B) {
	a, c, fd := benchPair(b)
	fds := []int{fd}
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		ack := []byte{1}
		for range b.N {
			_, got, err := Recv(c, nil, 1)
			if err != nil {
				done <- err
				return
			}
			CloseAll(got)
			if err := Send(c, ack, nil); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	ack := make([]byte, 1)
	for range b.N {
		if err := Send(a, nil, fds); err != nil {
			b.Fatalf("Send: %v", err)
		}
		if _, _, err := Recv(a, ack, 0); err != nil {
			b.Fatalf("Recv ack: %v", err)
		}
	}
	if err := <-done; err != nil {
		b.Fatalf("receiver: %v", err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handoffs/s")
}

// BenchmarkPipelinedRaw is the floor BenchmarkPipelined is measured
// against: the same pipelined sendmsg + recvmsg (+ close) with WriteMsgUnix
// and ReadMsgUnix called directly, no framing, no checks, no allocation.
// fds=0 sends bare one-byte datagrams: the cost of the syscalls alone.
func BenchmarkPipelinedRaw(b *testing.B) {
	for _, per := range []int{0, 1} {
		b.Run(fmt.Sprintf("fds=%d", per), func(b *testing.B) {
			a, c, fd := benchPair(b)
			var oobOut []byte
			if per == 1 {
				oobOut = putRights(make([]byte, maxOOB), []int{fd})
			}
			sent := make(chan error, 1)
			b.ResetTimer()
			go func() {
				data := []byte{0}
				for range b.N {
					if _, _, err := a.WriteMsgUnix(data, oobOut, nil); err != nil {
						sent <- err
						return
					}
				}
				sent <- nil
			}()
			buf := make([]byte, 16)
			oob := make([]byte, maxOOB)[:len(oobOut)]
			for range b.N {
				_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
				if err != nil || oobn != len(oobOut) {
					b.Fatalf("ReadMsgUnix: %d bytes of oob, %v", oobn, err)
				}
				if per == 1 {
					closeFD(int(int32(ne.Uint32(oob[cmsgHdrLen:]))))
				}
			}
			if err := <-sent; err != nil {
				b.Fatalf("WriteMsgUnix: %v", err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
