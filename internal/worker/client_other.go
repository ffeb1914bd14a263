//go:build !unix

package worker

import (
	"context"
	"net"

	"github.com/sockshare/sockshare/internal/ipc"
)

// No descriptor passing here: a process is never a worker, and Listen is
// net.Listen.
var self *client

// markerErr is always nil here: no process is a worker.
var markerErr error

type client struct {
	id, slot int
	gone     chan struct{}
}

func (w *client) listen(context.Context, string, string, string) (net.Listener, error) {
	return nil, ipc.ErrUnsupported
}

func (w *client) listenPacket(context.Context, string, string, string) (net.PacketConn, error) {
	return nil, ipc.ErrUnsupported
}

func (w *client) ready() error            { return ipc.ErrUnsupported }
func (w *client) sendUser([]byte) error   { return ipc.ErrUnsupported }
func (w *client) setHandler(func([]byte)) {}

// IPCForTest returns nil: no process is a worker here.
func IPCForTest() *net.UnixConn { return nil }
