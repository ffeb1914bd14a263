//go:build unix && !linux

package passfd

import "testing"

// passCredOpt is unused off Linux: the test that needs it skips.
const passCredOpt = -1

// inCloexecChild reports false: the seccomp filter TestRecvCloseOnExec runs
// under on Linux is Linux's, and here FD_CLOEXEC is set by fcntl after
// recvmsg, so only the flags can be checked.
func inCloexecChild(*testing.T) bool { return false }
