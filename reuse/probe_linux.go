package reuse

import (
	"bytes"
	"fmt"
	"os"
	"sync"
)

// migrateReqPath is per network namespace: it reflects the namespace of the
// process that reads it.
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

var (
	probeOnce sync.Once
	probed    Capabilities
)

// Probe reports what this kernel does with a reuseport group. The first call
// forms a throwaway group of two UDP sockets on 127.0.0.1 and attaches a
// trivial cBPF program to it; the result is cached. MigrateReq is read afresh
// on every call, since a sysctl can change at run time.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probeGroup() })
	c := probed
	c.MigrateReq = migrateReq()
	return c
}

func probeGroup() Capabilities {
	first, second, err := bindPair()
	if err != nil {
		return Capabilities{Note: fmt.Sprintf("linux: could not form a SO_REUSEPORT group on 127.0.0.1: %v", err)}
	}
	defer first.Close()
	defer second.Close()
	c := Capabilities{ReusePort: true, Balances: true}
	rc, err := first.SyscallConn()
	if err == nil {
		err = AttachCBPFRandom(rc, 2)
	}
	if err != nil {
		c.Note = fmt.Sprintf("linux: SO_ATTACH_REUSEPORT_CBPF unavailable (%v); a single flow always reaches one socket", err)
		return c
	}
	c.CBPFSteering = true
	return c
}

// migrateReq reports whether net.ipv4.tcp_migrate_req reads 1; a missing file
// (before Linux 5.14) or any other value is false.
func migrateReq() bool {
	b, err := os.ReadFile(migrateReqPath)
	return err == nil && string(bytes.TrimSpace(b)) == "1"
}
