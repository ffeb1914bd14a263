package reuse_test

import (
	"fmt"
	"net"

	"github.com/sockshare/sockshare/reuse"
)

// Slot sockets are created in slot order, because a cBPF program's return
// value is the index at which a socket joined the group. With the random
// program attached, even a single UDP client is spread over all slots.
func ExampleAttachCBPFRandom() {
	const slots = 3
	addr := "127.0.0.1:0"
	var group []net.PacketConn
	defer func() {
		for _, pc := range group {
			pc.Close()
		}
	}()
	for range slots {
		pc, err := reuse.ListenPacket("udp4", addr)
		if err != nil {
			fmt.Println(err)
			return
		}
		group = append(group, pc)
		addr = pc.LocalAddr().String() // later slots join the first one's port
	}

	rc, err := group[0].(*net.UDPConn).SyscallConn()
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := reuse.AttachCBPFRandom(rc, slots); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("steering", len(group), "sockets")
	// Output: steering 3 sockets
}
