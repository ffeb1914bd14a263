package ipc

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// Errors that cross the IPC boundary keep the sentinels they matched in
// the master.
func TestRemoteErrorKeepsSentinels(t *testing.T) {
	conflict := fmt.Errorf("%w: tcp :80 is served under %q", ErrPolicyConflict, "rr")
	unsupported := fmt.Errorf("udp: steering: %w", fmt.Errorf("reuse: attach cbpf: %w", errors.ErrUnsupported))
	inUse := fmt.Errorf("bind: %w", syscall.EADDRINUSE)
	cases := []struct {
		err  error
		want []error
		not  []error
	}{
		{conflict, []error{ErrPolicyConflict}, []error{errors.ErrUnsupported, syscall.EADDRINUSE}},
		{unsupported, []error{errors.ErrUnsupported, ErrUnsupported}, []error{ErrPolicyConflict}},
		{inUse, []error{syscall.EADDRINUSE}, []error{ErrPolicyConflict, errors.ErrUnsupported}},
	}
	for _, c := range cases {
		var errno syscall.Errno
		errors.As(c.err, &errno)
		// What the worker rebuilds from the reply's text, errno and flags.
		remote := &RemoteError{Msg: c.err.Error(), Errno: errno, Flags: ErrorFlags(c.err)}
		wrapped := fmt.Errorf("listen tcp :80: policy %q: %w", "rr", remote)
		for _, w := range c.want {
			if !errors.Is(wrapped, w) {
				t.Errorf("%v: errors.Is(%v) = false across IPC", c.err, w)
			}
		}
		for _, n := range c.not {
			if errors.Is(wrapped, n) {
				t.Errorf("%v: errors.Is(%v) = true across IPC", c.err, n)
			}
		}
	}
	if f := ErrorFlags(conflict); f != FlagPolicyConflict {
		t.Errorf("ErrorFlags(conflict) = %b", f)
	}
}
