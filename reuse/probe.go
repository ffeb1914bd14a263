package reuse

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// groupFacts is what is known in advance about this OS's reuseport groups,
// one value per platform file (probe_GOOS.go); Probe checks the rest on
// the running kernel.
type groupFacts struct {
	// refused, when set, is the note for an OS where this package refuses
	// to share an address at all (see ListenConfig): Probe binds nothing.
	refused string
	// cannotBind is the note's text when the throwaway group cannot form.
	cannotBind string
	// balances: the kernel spreads a group's connections and datagrams.
	balances bool
	// degraded is the note when the group forms; "" when nothing is.
	degraded string
	// cbpf: try SO_ATTACH_REUSEPORT_CBPF on the throwaway group (Linux).
	cbpf bool
	// migrateReqPath is the sysctl file of net.ipv4.tcp_migrate_req, ""
	// where there is none.
	migrateReqPath string
}

var (
	probeOnce sync.Once
	probed    Capabilities
)

// Probe reports what this kernel does with a reuseport group. The first call
// forms a throwaway group of two UDP sockets on 127.0.0.1 (on Linux it also
// attaches a trivial cBPF program to it); the result is cached. MigrateReq
// is read afresh on every call, since a sysctl can change at run time. On
// windows Probe binds nothing: sharing an address is refused there.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probeGroup(thisOS) })
	c := probed
	c.MigrateReq = migrateReq(thisOS.migrateReqPath)
	return c
}

func probeGroup(f groupFacts) Capabilities {
	if f.refused != "" {
		return Capabilities{Note: runtime.GOOS + ": " + f.refused}
	}
	first, second, err := bindPair()
	if err != nil {
		return Capabilities{Note: fmt.Sprintf("%s: %s: %v", runtime.GOOS, f.cannotBind, err)}
	}
	defer first.Close()
	defer second.Close()
	c := Capabilities{ReusePort: true, Balances: f.balances}
	if f.degraded != "" {
		c.Note = runtime.GOOS + ": " + f.degraded
	}
	if !f.cbpf {
		return c
	}
	rc, err := first.SyscallConn()
	if err == nil {
		err = AttachCBPFRandom(rc, 2)
	}
	if err != nil {
		c.Note = fmt.Sprintf("%s: SO_ATTACH_REUSEPORT_CBPF unavailable (%v); a single flow always reaches one socket", runtime.GOOS, err)
		return c
	}
	c.CBPFSteering = true
	return c
}

// migrateReq reports whether the sysctl file at path reads 1; no path, a
// missing file (before Linux 5.14) or any other value is false.
func migrateReq(path string) bool {
	if path == "" {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && string(bytes.TrimSpace(b)) == "1"
}
