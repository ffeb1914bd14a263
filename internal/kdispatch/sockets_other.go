//go:build !linux

package kdispatch

import "net"

// Sockets exists only on Linux.
type Sockets struct{}

// OpenSockets fails: kernel dispatch needs Linux.
func OpenSockets(string, string, int, Mode) (*Sockets, error) {
	return nil, notLinux("open sockets")
}
func (k *Sockets) Addr() net.Addr           { return nil }
func (k *Sockets) FD(int) (int, error)      { return -1, notLinux("fd") }
func (k *Sockets) SetLive(int, bool) error  { return notLinux("set live") }
func (k *Sockets) Drain(int) ([]int, error) { return nil, notLinux("drain") }
func (k *Sockets) Chosen() []uint64         { return nil }
func (k *Sockets) Close() error             { return nil }
func (k *Sockets) CountsFD() int            { return -1 }
func (k *Sockets) ClearCount(int)           {}
func (k *Sockets) Open() []int64            { return nil }
func (k *Sockets) Slots() int               { return 0 }
