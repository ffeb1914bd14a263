//go:build unix && !solaris

package reuse_test

import (
	"fmt"

	"github.com/sockshare/sockshare/reuse"
)

// Two listeners share one port: the second binds the address the first one
// was given. On Linux and FreeBSD the kernel then spreads new connections
// over both; Probe says what this OS does.
func ExampleListen() {
	first, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Close()

	second, err := reuse.Listen("tcp", first.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer second.Close()

	fmt.Println("same address:", first.Addr().String() == second.Addr().String())
	// Output: same address: true
}
