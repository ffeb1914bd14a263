//go:build !unix

package sockshare

import (
	"context"
	"net"
)

// No descriptor passing here: a process is never a worker, and Listen is
// net.Listen.
var self *workerState

// markerErr is always nil here: no process is a worker.
var markerErr error

type workerState struct {
	id, slot int
	gone     chan struct{}
}

func (w *workerState) listen(context.Context, string, string, string) (net.Listener, error) {
	return nil, ErrUnsupported
}

func (w *workerState) listenPacket(context.Context, string, string, string) (net.PacketConn, error) {
	return nil, ErrUnsupported
}

func (w *workerState) ready() error            { return ErrUnsupported }
func (w *workerState) sendUser([]byte) error   { return ErrUnsupported }
func (w *workerState) setHandler(func([]byte)) {}
