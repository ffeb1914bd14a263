//go:build unix

package tcp_test

import (
	"context"
	"fmt"
	"log"

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
