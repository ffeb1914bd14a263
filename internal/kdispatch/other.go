//go:build !linux

package kdispatch

import (
	"fmt"
	"runtime"
)

// notLinux is the error of every entry point here.
func notLinux(op string) error {
	return fmt.Errorf("kdispatch: %s: needs Linux, this is %s: %w", op, runtime.GOOS, errUnsupported)
}

// Probe reports that kernel dispatch needs Linux.
func Probe() error { return notLinux("probe") }

// Group is kernel dispatch over one reuseport group; it exists only on
// Linux. Its methods here return an error matching [errors.ErrUnsupported].
type Group struct{}

// NewGroup returns an error matching [errors.ErrUnsupported].
func NewGroup(mode Mode, fds []int) (*Group, error) { return nil, notLinux("new group") }

// Mode returns the zero Mode.
func (g *Group) Mode() Mode { return 0 }

// Len returns 0.
func (g *Group) Len() int { return 0 }

// SetLive returns an error matching [errors.ErrUnsupported].
func (g *Group) SetLive(slot int, live bool) error { return notLinux("set live") }

// Live returns nil.
func (g *Group) Live() []bool { return nil }

// SetSocket returns an error matching [errors.ErrUnsupported].
func (g *Group) SetSocket(slot, fd int) error { return notLinux("set socket") }

// Counts returns an error matching [errors.ErrUnsupported].
func (g *Group) Counts() ([]uint64, error) { return nil, notLinux("read counters") }

// Fallbacks returns an error matching [errors.ErrUnsupported].
func (g *Group) Fallbacks() (uint64, error) { return 0, notLinux("read counters") }

// ConnCounts returns nil.
func (g *Group) ConnCounts() *ConnCounts { return nil }

// ConnCountsFD returns -1.
func (g *Group) ConnCountsFD() int { return -1 }

// Close does nothing.
func (g *Group) Close() error { return nil }

// ConnCounts is a worker's mapping of the leastconn counts; it exists only
// on Linux.
type ConnCounts struct{}

// MapConnCounts returns an error matching [errors.ErrUnsupported].
func MapConnCounts(fd int) (*ConnCounts, error) { return nil, notLinux("map conn counts") }

// Len returns 0.
func (c *ConnCounts) Len() int { return 0 }

// Add returns 0.
func (c *ConnCounts) Add(slot int, delta int64) int64 { return 0 }

// Load returns 0.
func (c *ConnCounts) Load(slot int) int64 { return 0 }

// Store does nothing.
func (c *ConnCounts) Store(slot int, v int64) {}

// Close does nothing.
func (c *ConnCounts) Close() error { return nil }
