//go:build unix

package tcp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"syscall"

	"github.com/sockshare/sockshare/tcp"
)

// A master opens one SO_REUSEPORT socket per worker slot, all on one port,
// and sends slot k's descriptor to the worker in slot k.
func ExampleNewReusePortGroup() {
	g, err := tcp.NewReusePortGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	a, _ := g.FD(0)
	b, _ := g.FD(1)
	fmt.Println("sockets:", g.Len(), "distinct:", a != b)
	// Output: sockets: 2 distinct: true
}

// printAcks is a worker's tcp.Acker that shows what it would tell the
// master.
type printAcks struct{}

func (printAcks) Taken(id uint64)       { fmt.Println("taken:", id) }
func (printAcks) Returned(ids []uint64) { fmt.Println("returned:", ids) }
func (printAcks) Closed(uint64)         {}
func (printAcks) ListenerClosed()       { fmt.Println("listener closed") }

// A slot socket that leaves the group (its worker is gone, or the slot is
// given up) takes the connections queued on it along: the kernel resets
// them when it is closed. Release accepts them first, and a worker still
// listening serves them: its SocketListener's Accept returns handed
// connections before those of its own socket.
func ExampleNewSocketListener() {
	g, err := tcp.OpenReusePortSlot(context.Background(), "tcp4", "127.0.0.1:0", 0)
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	// A client connects while no worker accepts on slot 0.
	client, err := net.Dial("tcp4", g.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fmt.Fprint(client, "queued")
	queued, err := g.Release(0)
	if err != nil {
		log.Fatal(err)
	}

	// The worker of slot 1 gets its socket as a descriptor of its own (a
	// duplicate here; passfd.Send between processes).
	fd, err := g.FD(1)
	if err != nil {
		log.Fatal(err)
	}
	wfd, err := syscall.Dup(fd)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tcp.FileListener(wfd)
	if err != nil {
		log.Fatal(err)
	}
	sl := tcp.NewSocketListener(ln.(*net.TCPListener), 8, printAcks{})
	defer sl.Close()
	// The master hands it the released connections, with ids of its choice.
	sl.Deliver([]uint64{7}, queued)

	c, err := sl.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 6)
	io.ReadFull(c, msg)
	fmt.Printf("served: %s\n", msg)
	// Output:
	// taken: 7
	// served: queued
	// listener closed
}
