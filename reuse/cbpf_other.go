//go:build !linux

package reuse

import (
	"fmt"
	"syscall"
)

// AttachCBPFRandom steers a reuseport group with classic BPF, which only
// Linux has; here it returns [ErrUnsupported].
func AttachCBPFRandom(c syscall.RawConn, n int) error {
	return fmt.Errorf("reuse: attach cbpf: %w", ErrUnsupported)
}
