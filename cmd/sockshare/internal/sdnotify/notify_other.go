//go:build !linux

package sdnotify

import "fmt"

// Listen is unsupported here: abstract sockets and SCM_CREDENTIALS are
// Linux's.
func Listen(name string) (*Receiver, error) {
	return nil, fmt.Errorf("sdnotify: listen %q: %w", name, errUnsupported)
}

// NotifyTo is unsupported here.
func NotifyTo(addr, state string) error {
	return fmt.Errorf("sdnotify: notify %s: %w", addr, errUnsupported)
}

// MonotonicUsec is 0 here: nothing reads it.
func MonotonicUsec() uint64 { return 0 }
