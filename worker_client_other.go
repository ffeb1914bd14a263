//go:build !unix

package sockshare

import (
	"context"
	"net"
)

// No descriptor passing here: a process is never a worker, and Listen is
// net.Listen.
var self *workerClient

// markerErr is always nil here: no process is a worker.
var markerErr error

type workerClient struct {
	id, slot int
	gone     chan struct{}
}

func (w *workerClient) listen(context.Context, string, string, string) (net.Listener, error) {
	return nil, ErrUnsupported
}

func (w *workerClient) listenPacket(context.Context, string, string, string) (net.PacketConn, error) {
	return nil, ErrUnsupported
}

func (w *workerClient) ready() error            { return ErrUnsupported }
func (w *workerClient) sendUser([]byte) error   { return ErrUnsupported }
func (w *workerClient) setHandler(func([]byte)) {}
