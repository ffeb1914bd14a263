package sockshare

import (
	"context"
	"net"

	"github.com/sockshare/sockshare/internal/worker"
)

// Listen announces on the local network address, like net.Listen. In a
// worker, the master serves the address under its policy; elsewhere it is
// net.Listen. network must be "tcp", "tcp4" or "tcp6".
//
// Errors in a worker name the address and the policy and wrap the cause:
// errors.Is(err, syscall.EADDRINUSE) holds for a port in use. The master
// survives a failed Listen, and a later Listen may retry.
//
// The listener behaves alike under every policy: SetDeadline, Close and
// Addr as on a *net.TCPListener, and every accepted connection has the
// methods of *net.TCPConn and is a syscall.Conn. Its type differs: a
// *net.TCPListener standalone, a *tcp.SocketListener under shared and
// reuseport (embedding the *net.TCPListener), a *tcp.HandoffListener under
// rr and leastconn (whose File and SyscallConn report
// errors.ErrUnsupported: the master holds the socket). Under leastconn an
// accepted connection is a wrapper reporting its Close to the master; use
// TCPConn to get the *net.TCPConn under any policy. Close the listener to
// stop listening: when no worker listens on an address any more, the
// master closes it.
func Listen(network, address string) (net.Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), network, address)
}

// ListenPacket announces on the local network address, like
// net.ListenPacket. In a worker, every worker reads datagrams from a socket
// the master bound (shared), or from its slot's socket of a reuseport group.
// The result is a *net.UDPConn. network must be "udp", "udp4" or "udp6".
// A connection policy (rr, leastconn) falls back to shared.
func ListenPacket(network, address string) (net.PacketConn, error) {
	var lc ListenConfig
	return lc.ListenPacket(context.Background(), network, address)
}

// ListenConfig holds options for Listen and ListenPacket.
type ListenConfig struct {
	// Policy, if set, asks for this policy instead of the master's. An
	// address already served under a different policy is an error
	// wrapping ErrPolicyConflict. Outside a worker the name is still
	// checked (an unknown one is an error), then the call is plain
	// net.Listen.
	Policy string
}

// Listen is like the package-level Listen, with ctx bounding the wait for
// the master's answer.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return worker.Listen(ctx, network, address, lc.Policy)
}

// ListenPacket is like the package-level ListenPacket, with ctx bounding
// the wait for the master's answer.
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return worker.ListenPacket(ctx, network, address, lc.Policy)
}

// IsWorker reports whether this process runs as a worker under a master.
func IsWorker() bool { return worker.Active() }

// WorkerID returns this worker's id (monotonic, never reused, from 1), or 0
// outside a worker.
func WorkerID() int { return worker.ID() }

// Slot returns this worker's stable slot index (0..Workers-1), or -1
// outside a worker.
func Slot() int { return worker.Slot() }

// Ready tells the master this worker is ready to serve. Without it the
// first Listen served counts as ready. Outside a worker it does nothing.
func Ready() error { return worker.Ready() }

// Send sends payload to the master's Config.OnMessage. It returns
// ErrNotWorker outside a worker.
func Send(payload []byte) error {
	if !worker.Active() {
		return ErrNotWorker
	}
	return worker.Send(payload)
}

// HandleMessages sets the function that receives the master's messages
// (Master.Send). It runs on the worker's IPC goroutine and must not block:
// connection handoffs wait behind it. Messages that arrive before a
// handler is set are dropped.
func HandleMessages(h func(payload []byte)) { worker.HandleMessages(h) }

// OrphanGrace is how long a worker whose master is gone may drain after
// the SIGTERM it sends itself, before it sends itself SIGKILL. It is short
// on purpose: an orphan cannot be supervised, and while it drains it holds
// the address (shared, reuseport), so a restarted master could not bind it.
const OrphanGrace = worker.OrphanGrace

// MasterGone returns a channel closed when the connection to the master is
// lost; the worker then terminates itself (SIGTERM, then SIGKILL after
// OrphanGrace). Outside a worker it returns nil.
func MasterGone() <-chan struct{} { return worker.MasterGone() }

// TCPConn returns the *net.TCPConn behind a connection that a Listener of
// this package accepted, under any policy. Under leastconn Accept returns a
// wrapper (it reports the connection's Close to the master), so a plain
// c.(*net.TCPConn) fails there; every *net.TCPConn method is still there
// on the wrapper, and it is a syscall.Conn. Closing what TCPConn returns is
// noticed too, within a quarter of a second.
func TCPConn(c net.Conn) (*net.TCPConn, bool) {
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x, true
		case interface{ Unwrap() net.Conn }:
			c = x.Unwrap()
		default:
			return nil, false
		}
	}
}

// PacketPollInterval is how often a worker checks whether its datagram
// sockets were closed, to tell the master (which closes a group nobody
// reads).
const PacketPollInterval = worker.PacketPollInterval
