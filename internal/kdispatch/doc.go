// Package kdispatch is kernel dispatch: a BPF program attached to a
// SO_REUSEPORT group chooses the slot socket for each new connection (or
// datagram), so the process that owns the sockets spends nothing per
// connection and a worker only accepts on the socket it inherited.
//
// # What it owns
//
// A [Group] is given the listening sockets of one reuseport group, one per
// worker slot, in slot order, and owns only what it creates: a
// REUSEPORT_SOCKARRAY of those sockets, the maps below, and the program it
// attaches to the group. It never closes, duplicates or accepts on the
// sockets; the caller keeps them open for as long as the Group lives and
// closes the Group first (Close detaches the program, after which the
// kernel's 4-tuple hash dispatches again).
//
// The program is one of three, chosen by [Mode]:
//
//   - [RoundRobin]: an atomic fetch-add counter, modulo the number of live
//     slots, indexes the list of live slots: exact rotation by count.
//   - [Sticky]: the client's source address, hashed with
//     [policy.HashIP], indexes a [policy.Maglev] table held in a BPF array,
//     so one client IP always reaches one slot and a slot going down moves
//     none of the others' clients. An IPv4 packet hashes its source address;
//     an IPv6 packet whose source is IPv4-mapped (::ffff:a.b.c.d) hashes the
//     last 4 bytes, as the IPv4 client it is; any other IPv6 source hashes
//     all 16 bytes. A master dispatching sticky itself with the same table
//     sends each client to the same slot.
//   - [LeastConn]: the live slot with the fewest open connections, read from
//     a BPF_F_MMAPABLE array that workers map ([MapConnCounts]) and update
//     with ordinary atomic adds (+1 on accept, −1 on close): no syscall per
//     connection. Ties go in rotation.
//
// Every mode skips slots that are not live ([Group.SetLive]): a slot whose
// worker restarts gets no new connection, while its socket (owned by the
// master) keeps what is already queued for the replacement. With no slot
// live, or on any failure inside the program, the program leaves the choice
// to the kernel's hash ([Group.Fallbacks] counts these), so connections
// queue rather than being refused.
//
// # Requirements and traps (Linux only)
//
//   - Root, or CAP_BPF and CAP_NET_ADMIN (unprivileged BPF is usually
//     disabled). Workers that only map the leastconn counts need no
//     privilege. [Probe] says whether all of it works here, and why not.
//   - Kernel 5.17 or later (BPF atomic fetch-add: 5.12; bpf_loop, which the
//     leastconn scan uses so that the verifier's work does not grow with
//     the slot count: 5.17) with BTF; 6.18 is what is tested.
//   - Plain TCP sockets. Go creates MPTCP listeners by default where the
//     kernel has MPTCP (Go 1.24+), and the kernel refuses to attach a BPF
//     program to those or put them in a sockarray (EOPNOTSUPP): create the
//     sockets with net.ListenConfig.SetMultipathTCP(false), or with
//     socket(2) directly. [NewGroup] names the slot of an MPTCP socket.
//   - The programs are written with cilium/ebpf's asm package, no C
//     compiler and no generated files. Its FetchAdd instruction is encoded
//     without BPF_FETCH (a plain atomic add whose result is never read back)
//     unless the instruction's Constant is set to 1; this package does, and
//     a test pins what the verifier sees.
//
// [Sockets] is what a master holds for one address under kernel dispatch:
// the slot sockets it binds, the [Group] attached to them, and the
// operations the master's groups need (a slot live or not, a leaving
// slot's queue drained, the counts).
//
// On other systems [Probe], [NewGroup] and [OpenSockets] return an error
// matching [errors.ErrUnsupported], and the package still compiles.
package kdispatch
