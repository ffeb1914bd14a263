//go:build unix

package udp_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"syscall"

	"github.com/sockshare/sockshare/udp"
)

// Under the shared policy every worker gets the same socket: all workers
// read one receive queue and reply from one address. The master binds an
// ordinary socket and sends its descriptor to each worker (here two
// duplicates stand in for passfd.Send); each worker reads with
// FilePacketConn.
func ExampleFilePacketConn() {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan string)
	for w := range 2 {
		var wfd int
		rc.Control(func(fd uintptr) { wfd, err = syscall.Dup(int(fd)) })
		if err != nil {
			log.Fatal(err)
		}
		conn, err := udp.FilePacketConn(wfd)
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		go func() {
			buf := make([]byte, 64)
			n, _, err := conn.ReadFrom(buf)
			if err == nil {
				got <- fmt.Sprintf("worker %d read %q", w, buf[:n])
			}
		}()
	}
	client, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("ping"))
	msg := <-got
	fmt.Println(msg[len("worker 0 "):]) // whichever worker read first
	// Output: read "ping"
}

// Under reuseport every worker slot has a socket of its own on one port.
// Each worker makes a *net.UDPConn of its descriptor with FilePacketConn
// and reads its share. Without steering the kernel hashes each flow to one
// socket, so this one client's datagrams all reach the same worker.
func ExampleNewReusePortGroup() {
	g, err := udp.NewReusePortGroup(context.Background(), "udp4", "127.0.0.1:0", 2, false)
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	got := make(chan int)
	for slot := range 2 {
		fd, err := g.FD(slot)
		if err != nil {
			log.Fatal(err)
		}
		// The worker's own descriptor: a duplicate here, passfd.Send
		// between processes.
		wfd, err := syscall.Dup(fd)
		if err != nil {
			log.Fatal(err)
		}
		conn, err := udp.FilePacketConn(wfd)
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := conn.ReadFrom(buf); err != nil {
					return
				}
				got <- slot
			}
		}()
	}
	client, err := net.Dial("udp4", g.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	seen := map[int]int{}
	for range 10 {
		client.Write([]byte("ping"))
		seen[<-got]++
	}
	fmt.Println("datagrams:", 10, "workers that got them:", len(seen))
	// Output: datagrams: 10 workers that got them: 1
}
