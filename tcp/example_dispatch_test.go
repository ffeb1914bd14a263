//go:build unix

package tcp_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"

	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/tcp"
)

// channel is the master's end of one worker's unix socket. As a tcp.Sink
// it sends the descriptors of the connections handed to that worker, with
// their ids as the payload. passfd.Send only borrows the descriptors: the
// Dispatcher keeps its copies until the worker acknowledges.
type channel struct{ c *net.UnixConn }

func (ch channel) SendConns(ids []uint64, fds []int) error {
	payload := binary.LittleEndian.AppendUint64(nil, ids[0])
	for _, id := range ids[1:] {
		payload = binary.LittleEndian.AppendUint64(payload, id)
	}
	return passfd.Send(ch.c, payload, fds)
}

// acks is a worker's tcp.Acker. Here it calls the Dispatcher directly; a
// worker in another process sends these over its channel, and the master
// calls Ack with them.
type acks struct {
	d *tcp.Dispatcher
	m *tcp.Member
}

func (a *acks) Taken(id uint64)       { a.d.Ack(a.m, []uint64{id}, nil, nil) }
func (a *acks) Returned(ids []uint64) { a.d.Ack(a.m, nil, ids, nil) }
func (a *acks) Closed(id uint64)      { a.d.Ack(a.m, nil, nil, []uint64{id}) }
func (a *acks) ListenerClosed()       {}

// deliver is a worker's receive loop: every message on its channel is a
// batch of connections for its HandoffListener.
func deliver(c *net.UnixConn, hl *tcp.HandoffListener) {
	buf := make([]byte, 8*tcp.DefaultWindow)
	for {
		n, fds, err := passfd.Recv(c, buf, tcp.DefaultWindow)
		if err != nil {
			hl.Close() // hands back whatever it still holds
			return
		}
		ids := make([]uint64, n/8)
		for i := range ids {
			ids[i] = binary.LittleEndian.Uint64(buf[8*i:])
		}
		hl.Deliver(ids, fds) // takes ownership of fds
	}
}

// The rr dispatcher in a process model of one's own: the master accepts and
// hands every connection to the next worker over a unix socket; each worker
// serves the connections out of a HandoffListener. The workers are
// goroutines here; with processes, the socketpair's remote end is what the
// child inherits (exec.Cmd.ExtraFiles), and the child calls passfd.FileConn
// on it.
func ExampleNewDispatcher() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	d, err := tcp.NewDispatcher(ln.(*net.TCPListener), tcp.DispatcherConfig{
		Picker: policy.NewRoundRobin(),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	for slot := range 2 {
		master, remote, err := passfd.Socketpair()
		if err != nil {
			log.Fatal(err)
		}
		defer master.Close()
		worker, err := passfd.FileConn(remote) // in the worker process
		if err != nil {
			log.Fatal(err)
		}
		defer worker.Close()
		a := &acks{d: d}
		hl := tcp.NewHandoffListener(d.Addr(), d.Window(), d.TracksClose(), a)
		a.m = d.Add(slot, channel{master})
		go deliver(worker, hl)
		go func() {
			for {
				c, err := hl.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "worker %d", slot)
				c.Close()
			}
		}()
	}
	for range 4 {
		c, err := net.Dial("tcp4", d.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		reply, _ := io.ReadAll(c)
		c.Close()
		fmt.Println(string(reply))
	}
	// Output:
	// worker 0
	// worker 1
	// worker 0
	// worker 1
}
