// Package udp holds the UDP backends of sockshare. A datagram socket has no
// accept, so a UDP address is always served by handle sharing: either one
// socket that every worker reads (shared, the default), or one SO_REUSEPORT
// socket per worker slot (reuseport), where the kernel hashes each flow's
// 4-tuple to one socket. With steering, a classic BPF program attached to
// the group spreads datagrams evenly over the slots, one flow included, at
// the cost of flow affinity (Linux only).
//
// The master owns every socket; a worker gets a duplicate, so a replacement
// worker in a slot inherits the datagrams queued on that slot's socket.
// The master never reads its sockets and keeps them out of its netpoller:
// otherwise every datagram that arrives would wake the master for nothing.
//
// Nothing here needs the root package: a program with its own process
// model calls NewReusePortGroup (or OpenReusePortSlot) in the master, sends
// each worker its slot's descriptor with passfd, and the worker makes a
// *net.UDPConn of it with FilePacketConn (see ExampleNewReusePortGroup).
// Shared needs nothing from here in the master: any bound socket's
// descriptor, sent to every worker, is read with FilePacketConn (see
// ExampleFilePacketConn).
package udp
