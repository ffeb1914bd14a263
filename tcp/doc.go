// Package tcp holds the TCP backends of sockshare: the master side and the
// worker side of each strategy. It knows nothing of processes; the root
// package moves the descriptors between them.
//
//   - shared: the master listens once and sends that listening descriptor
//     to every worker, which turns it into a net.Listener with FileListener
//     and accepts on it competitively. Nothing else is needed: any
//     listening socket will do.
//   - rr and leastconn: the master listens and a Dispatcher accepts, picks a
//     worker with a policy.Picker, and hands each accepted descriptor to it
//     through a Sink. The master keeps its copy of every handed descriptor
//     until the worker acknowledges that its Accept returned the connection;
//     if the worker dies first or hands it back, the connection goes to
//     another worker. Each worker has a window of unacknowledged handoffs,
//     and the queue of connections waiting for a window is bounded: when it
//     is full the Dispatcher stops accepting and the kernel backlog holds
//     the load. On the worker, a HandoffListener is the net.Listener those
//     connections come out of.
//   - reuseport: a ReusePortGroup opens one SO_REUSEPORT socket per worker
//     slot, in slot order, and the master sends slot k's socket to the worker
//     in slot k. The master keeps its copy, so a replacement worker inherits
//     the connections queued on the slot's socket. On the worker a
//     SocketListener accepts on that socket, and also serves the
//     connections the master took from the queue of a slot socket that left
//     the group (ReusePortGroup.Release).
//
// # One strategy in a process model of one's own
//
// Nothing here needs the root package: a program that starts and watches
// its workers itself can take one strategy from this package and move the
// descriptors with passfd. For rr and leastconn that is NewDispatcher with
// a Sink per worker in the master and NewHandoffListener with an Acker in
// each worker (see ExampleNewDispatcher); for reuseport, NewReusePortGroup
// or OpenReusePortSlot in the master and FileListener, or NewSocketListener
// where released connections are handed on, in the workers (see
// ExampleNewSocketListener).
//
// # Platforms
//
// The dispatcher uses raw accept4 on Linux and the BSDs (accept
// plus close-on-exec under syscall.ForkLock on darwin and aix). The
// Dispatcher and the worker-side listeners exist on unix only; on windows
// the reuseport groups fail with errors matching errors.ErrUnsupported.
package tcp
