package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// ErrUnsupported is returned, wrapped, where this OS cannot share an address
// or steer a group. It satisfies errors.Is(err, errors.ErrUnsupported).
var ErrUnsupported = fmt.Errorf("%w on %s", errors.ErrUnsupported, runtime.GOOS)

// Capabilities says what this OS does with a reuseport group and related
// features.
type Capabilities struct {
	// ReusePort: a second socket can bind the same address.
	ReusePort bool
	// Balances: the kernel spreads connections and datagrams over the
	// group (Linux, FreeBSD 12+ with SO_REUSEPORT_LB).
	Balances bool
	// CBPFSteering: SO_ATTACH_REUSEPORT_CBPF works (Linux only), so
	// [AttachCBPFRandom] can spread even a single flow.
	CBPFSteering bool
	// MigrateReq: net.ipv4.tcp_migrate_req is 1 (Linux 5.14+), so closing
	// one member moves its queued connections to another instead of
	// resetting them. Read afresh on every call to [Probe].
	MigrateReq bool
	// Note is one sentence on degraded behaviour, "" when nothing is
	// degraded.
	Note string
}

// controlFunc is the signature of net.ListenConfig.Control.
type controlFunc = func(network, address string, c syscall.RawConn) error

// ListenConfig returns a net.ListenConfig whose Control makes every socket it
// creates able to share its address with other such sockets: it sets
// SO_REUSEPORT through go-reuseport, then this package's own options (on
// Linux, SO_REUSEADDR is cleared again on UDP sockets; see the package doc).
// The caller may set other fields (KeepAlive, ...) before use.
//
// On Windows and on systems without SO_REUSEPORT, Control fails with
// [ErrUnsupported], so Listen and ListenPacket fail instead of opening a socket
// that does not share.
func ListenConfig() net.ListenConfig {
	return net.ListenConfig{Control: chain(platformControls()...)}
}

// Listen is ListenConfig().Listen with context.Background().
func Listen(network, address string) (net.Listener, error) {
	lc := ListenConfig()
	return lc.Listen(context.Background(), network, address)
}

// ListenPacket is ListenConfig().ListenPacket with context.Background().
func ListenPacket(network, address string) (net.PacketConn, error) {
	lc := ListenConfig()
	return lc.ListenPacket(context.Background(), network, address)
}

// chain is the composition point for socket options: it runs each control in
// order on the socket before bind and stops at the first error.
func chain(controls ...controlFunc) controlFunc {
	return func(network, address string, c syscall.RawConn) error {
		for _, control := range controls {
			if err := control(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// bindPair forms a throwaway group of two UDP sockets on one loopback port,
// through ListenConfig, for the capability probes. The caller closes both.
func bindPair() (first, second *net.UDPConn, err error) {
	a, err := ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	b, err := ListenPacket("udp4", a.LocalAddr().String())
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a.(*net.UDPConn), b.(*net.UDPConn), nil
}
