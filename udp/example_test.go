//go:build unix

package udp_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sockshare/sockshare/udp"
)

// Under the shared policy every worker slot gets the same socket: all
// workers read one receive queue and reply from one address.
func ExampleNewShared() {
	s, err := udp.NewShared(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a, _ := s.FD(0)
	b, _ := s.FD(1)
	fmt.Println("same socket for every slot:", a == b)
	// Output: same socket for every slot: true
}
