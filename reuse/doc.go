// Package reuse opens sockets that share one address with other sockets, and
// says what the operating system does with such a group.
//
// It owns socket options and nothing else: [ListenConfig] sets SO_REUSEPORT
// (through go-reuseport's Control, chained with options of our own) on every
// socket it creates, [AttachCBPFRandom] installs a steering program on a
// group, and [Probe] reports, per OS, which of these features work and what is
// degraded. It knows nothing of processes: who creates the sockets, and in
// which order, is the caller's business.
//
// # What the kernel does with a group
//
// Sockets that set SO_REUSEPORT before binding the same address and protocol
// form a group. What happens to traffic for that address depends on the OS:
//
//   - Linux (3.9+) hashes the 4-tuple and picks one member. Many short
//     connections spread statistically evenly (for N flows over k sockets the
//     coefficient of variation is about √((k−1)/N)), but a single flow, for
//     example one UDP client, always reaches the same socket, and with tens of
//     long-lived connections a 2:1 split is normal.
//   - Linux: closing one member resets every connection queued in its accept
//     backlog and every handshake in flight on it, unless
//     net.ipv4.tcp_migrate_req=1 (Linux 5.14+, off by default), which moves
//     them to another member. Keeping the socket open and handing it to the
//     replacement process avoids the problem on every kernel.
//   - Linux: any process with the same effective uid may join the group and
//     take a share of the traffic. Processes of other users cannot: for that
//     reason [ListenConfig] clears the SO_REUSEADDR that go-reuseport sets on
//     UDP sockets, since two Linux UDP sockets that both set SO_REUSEADDR may
//     share an address whatever their owners, and the newcomer then receives
//     every unicast datagram.
//   - FreeBSD 12+ balances a group whose members set SO_REUSEPORT_LB (which
//     go-reuseport does on FreeBSD).
//   - macOS and OpenBSD accept the second bind but do not balance: every
//     connection goes to one socket.
//   - Windows has only SO_REUSEADDR, which lets any process take the port.
//     This package refuses rather than degrade silently: [ListenConfig]'s
//     Control fails with [ErrUnsupported].
//
// # Steering with classic BPF (Linux)
//
// SO_ATTACH_REUSEPORT_CBPF (Linux 4.5 for UDP, 4.6 for TCP) attaches a
// classic BPF program to the whole group through any one member. The
// program's return value is the index of the member that gets the datagram or
// connection; an index outside the group falls back to the hash. The index is
// the order in which sockets joined the group, so a caller that maps indexes
// to worker slots must create the slot sockets in slot order, 0 first.
// [AttachCBPFRandom] returns a random index, which spreads even a single UDP
// flow evenly over the group.
package reuse
