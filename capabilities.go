package sockshare

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/sockshare/sockshare/internal/kdispatch"
	"github.com/sockshare/sockshare/passfd"
	"github.com/sockshare/sockshare/policy"
	"github.com/sockshare/sockshare/reuse"
)

// Capabilities reports what this operating system and kernel support,
// as measured by Probe. A false field is a degraded or missing
// feature; Degraded turns that into a warning for one policy.
type Capabilities struct {
	// FDPassing: descriptors pass between processes over an AF_UNIX
	// SOCK_SEQPACKET socketpair (a real round trip was tried). Without
	// it there is no master: NewMaster returns an error wrapping
	// ErrUnsupported, and Listen is plain net.Listen.
	FDPassing bool
	// ReusePort: several sockets can bind one address (SO_REUSEPORT).
	// Without it the reuseport policy fails to bind.
	ReusePort bool
	// ReusePortBalancing: the kernel spreads connections over a
	// SO_REUSEPORT group (Linux; FreeBSD 12+ with SO_REUSEPORT_LB).
	// Without it reuseport binds but one socket gets every connection.
	ReusePortBalancing bool
	// CBPFSteering: SO_ATTACH_REUSEPORT_CBPF works (Linux), so
	// Config.UDPSteering can spread even a single UDP flow.
	CBPFSteering bool
	// MigrateReq: net.ipv4.tcp_migrate_req is 1 (Linux 5.14+): closing a
	// reuseport socket moves its queued connections to the others
	// instead of resetting them. Read afresh on every call.
	MigrateReq bool
	// KernelDispatch: a BPF program can choose the worker of each
	// connection (Config.Dispatch "kernel"; Linux, root or CAP_BPF and
	// CAP_NET_ADMIN). KernelDispatchErr says why not.
	KernelDispatch    bool
	KernelDispatchErr error
	// Note describes the degraded behaviours in a sentence or two, ""
	// when nothing is degraded.
	Note string
}

var (
	fdPassingOnce sync.Once
	fdPassingErr  error
)

// Probe measures this platform. The first call makes a socketpair,
// passes a descriptor over it, and forms a throwaway SO_REUSEPORT group on
// 127.0.0.1 (see reuse.Probe); the results are cached, except MigrateReq.
func Probe() Capabilities {
	fdPassingOnce.Do(func() { fdPassingErr = probeFDPassing() })
	rc := reuse.Probe()
	p := Capabilities{
		FDPassing:          fdPassingErr == nil,
		ReusePort:          rc.ReusePort,
		ReusePortBalancing: rc.Balances,
		CBPFSteering:       rc.CBPFSteering,
		MigrateReq:         rc.MigrateReq,
		Note:               rc.Note,
	}
	p.KernelDispatchErr = kdispatch.Probe()
	p.KernelDispatch = p.KernelDispatchErr == nil
	if fdPassingErr != nil {
		note := fmt.Sprintf("%s: no descriptor passing (%v): no master can run here, every process serves alone", runtime.GOOS, fdPassingErr)
		if p.Note != "" {
			note += "; " + p.Note
		}
		p.Note = note
	}
	return p
}

// probeFDPassing sends one descriptor across a fresh socketpair and
// receives it, closing everything it opened.
func probeFDPassing() error {
	local, remote, err := passfd.Socketpair()
	if err != nil {
		return err
	}
	defer local.Close()
	peer, err := passfd.FileConn(remote) // closes remote
	if err != nil {
		return err
	}
	defer peer.Close()
	// Any descriptor will do; the remote end's own is at hand. Control
	// rather than Fd keeps it in its mode.
	rc, err := local.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return err
	}
	if err := passfd.Send(local, []byte("probe"), []int{fd}); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, fds, err := passfd.Recv(peer, buf, 1)
	passfd.CloseAll(fds)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "probe" || len(fds) != 1 {
		return errors.New("descriptor lost in transit")
	}
	return nil
}

// Degraded returns a one-line warning when policy p (a name or an alias)
// does not work as documented on this platform, or "" when it does or
// when p is not a policy (NewMaster reports that). Programs should print
// it before starting a master, so a degraded mode is never silent.
func (c Capabilities) Degraded(p policy.Name) string {
	name, err := policy.Parse(string(p))
	if err != nil {
		return ""
	}
	switch {
	case !c.FDPassing:
		return fmt.Sprintf("policy %q is not available on %s: no descriptor passing, so no master; each process would serve the address alone", name, runtime.GOOS)
	case name == policy.ReusePort && !c.ReusePort:
		return fmt.Sprintf("policy %q is not available on %s: sockets cannot share an address (%s)", name, runtime.GOOS, c.Note)
	case name == policy.ReusePort && !c.ReusePortBalancing:
		return fmt.Sprintf("policy %q is degraded on %s: SO_REUSEPORT binds but the kernel does not balance, so one worker may get every connection; rr or leastconn balance here", name, runtime.GOOS)
	}
	return ""
}
