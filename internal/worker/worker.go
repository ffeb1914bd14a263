package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/policy"
)

// ErrMasterGone is returned by worker calls once the master is gone.
var ErrMasterGone = errors.New("sockshare: master is gone")

// OrphanGrace: see sockshare.OrphanGrace.
const OrphanGrace = 500 * time.Millisecond

// PacketPollInterval: see sockshare.PacketPollInterval.
const PacketPollInterval = 250 * time.Millisecond

// Active reports whether this process is a worker with a master.
func Active() bool { return self != nil }

// MarkerErr is the error of a process whose worker markers are there but
// unusable (wrapping ipc.ErrWorkerEnv), or nil.
func MarkerErr() error { return markerErr }

// ID is this worker's id, 0 outside a worker.
func ID() int {
	if self == nil {
		return 0
	}
	return self.id
}

// Slot is this worker's slot, -1 outside a worker.
func Slot() int {
	if self == nil {
		return -1
	}
	return self.slot
}

// Ready tells the master this worker is ready; nothing outside a worker.
func Ready() error {
	if self == nil {
		return nil
	}
	return self.ready()
}

// Send sends payload to the master. The caller checks Active.
func Send(payload []byte) error { return self.sendUser(payload) }

// HandleMessages sets the handler of the master's messages.
func HandleMessages(h func(payload []byte)) {
	if self != nil {
		self.setHandler(h)
	}
}

// MasterGone is closed when the master is gone; nil outside a worker.
func MasterGone() <-chan struct{} {
	if self == nil {
		return nil
	}
	return self.gone
}

// Listen is sockshare.ListenConfig.Listen: asked of the master in a
// worker, net.Listen elsewhere.
func Listen(ctx context.Context, network, address, pol string) (net.Listener, error) {
	if err := preflight(ipc.StreamNet(network), "tcp, tcp4 or tcp6; ListenPacket serves udp", network, address, pol); err != nil {
		return nil, err
	}
	if self == nil {
		var nlc net.ListenConfig
		return nlc.Listen(ctx, network, address)
	}
	return self.listen(ctx, network, address, pol)
}

// ListenPacket is sockshare.ListenConfig.ListenPacket.
func ListenPacket(ctx context.Context, network, address, pol string) (net.PacketConn, error) {
	if err := preflight(ipc.PacketNet(network), "udp, udp4 or udp6; Listen serves tcp", network, address, pol); err != nil {
		return nil, err
	}
	if self == nil {
		var nlc net.ListenConfig
		return nlc.ListenPacket(ctx, network, address)
	}
	return self.listenPacket(ctx, network, address, pol)
}

// preflight is what Listen and ListenPacket check before anything is
// asked or bound: the network (netOK, else want says which), the policy
// name, and the markers.
func preflight(netOK bool, want, network, address, pol string) error {
	if !netOK {
		return &net.OpError{Op: "listen", Net: network, Err: errNetwork(network, want)}
	}
	if err := checkPolicy(network, address, pol); err != nil {
		return err
	}
	if markerErr != nil {
		return wrapListenErr(network, address, pol, markerErr)
	}
	return nil
}

// checkPolicy rejects an unknown policy name before anything is bound,
// standalone as in a worker, so a typo never goes unnoticed.
func checkPolicy(network, address, pol string) error {
	if pol == "" {
		return nil
	}
	if _, err := policy.Parse(pol); err != nil {
		return wrapListenErr(network, address, pol, err)
	}
	return nil
}

type networkError struct {
	network, want string
}

func (e *networkError) Error() string {
	return "sockshare: " + ipc.ErrNetwork.Error() + " " + quote(e.network) + " (want " + e.want + ")"
}

func (e *networkError) Unwrap() error { return ipc.ErrNetwork }

func errNetwork(network, want string) error { return &networkError{network, want} }

func quote(s string) string { return "\"" + s + "\"" }

// wrapListenErr makes the error a worker's Listen returns: it names the
// address and the policy and wraps the cause.
func wrapListenErr(network, address, pol string, err error) error {
	if pol == "" {
		return fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	return fmt.Errorf("listen %s %s: policy %q: %w", network, address, pol, err)
}
