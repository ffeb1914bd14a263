//go:build unix && !linux

package sockshare

import (
	"errors"
	"net"

	"github.com/sockshare/sockshare/internal/kdispatch"
)

// kernelGroup exists only on Linux; resolveDispatch never chooses kernel
// dispatch elsewhere.
type kernelGroup struct{}

var errNoKernel = errors.New("kernel dispatch needs Linux")

func openKernelGroup(string, string, int, kdispatch.Mode) (*kernelGroup, error) {
	return nil, errNoKernel
}
func (k *kernelGroup) Addr() net.Addr           { return nil }
func (k *kernelGroup) FD(int) (int, error)      { return -1, errNoKernel }
func (k *kernelGroup) setLive(int, bool) error  { return errNoKernel }
func (k *kernelGroup) drain(int) ([]int, error) { return nil, errNoKernel }
func (k *kernelGroup) chosen() []uint64         { return nil }
func (k *kernelGroup) Close() error             { return nil }

func (k *kernelGroup) countsFD() int  { return -1 }
func (k *kernelGroup) clearCount(int) {}
func (k *kernelGroup) open() []int64  { return nil }
func (k *kernelGroup) slots() int     { return 0 }
