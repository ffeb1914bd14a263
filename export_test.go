//go:build unix

package sockshare

import (
	"net"

	"github.com/sockshare/sockshare/internal/worker"
)

// Test-only hooks. This file is compiled into the test binary only, which
// is also what the test masters run as their workers.

// WorkerIPCForTest returns this worker's end of the IPC socketpair, or nil
// outside a worker. Tests write malformed messages on it to check that the
// master survives them.
func WorkerIPCForTest() *net.UnixConn { return worker.IPCForTest() }

// ProbeFDPassingForTest runs the descriptor-passing probe behind
// Capabilities afresh (Capabilities caches its result).
func ProbeFDPassingForTest() error { return probeFDPassing() }
