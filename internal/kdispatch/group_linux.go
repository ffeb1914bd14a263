package kdispatch

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sockshare/sockshare/policy"
)

// Group is kernel dispatch over one reuseport group: the program attached
// to it and the maps it reads. Its methods are safe for concurrent use.
//
// The Group owns the BPF objects it creates and none of the sockets: see
// the package doc.
type Group struct {
	mode  Mode
	n     int
	prog  *ebpf.Program
	m     maps
	conns *ConnCounts // the Group's own mapping of m.conns (leastconn)

	mu      sync.Mutex
	fds     []int    // current socket of each slot, as given
	cookies []uint64 // SO_COOKIE of each, to recognise it at Close
	live    []bool
	maglev  *policy.Maglev // sticky: the table in m.table
	closed  bool
}

// NewGroup attaches mode's program to the reuseport group formed by fds,
// the listening TCP sockets (or bound UDP sockets) of slots 0, 1, ... in
// order. Every slot starts live. The sockets must have SO_REUSEPORT set and
// share one address, and TCP sockets must not be MPTCP (see the package
// doc). NewGroup neither closes nor keeps the descriptors beyond the
// Group's life; on error nothing is attached and everything it created is
// closed.
func NewGroup(mode Mode, fds []int) (_ *Group, err error) {
	const op = "new group"
	if !mode.valid() {
		return nil, fmt.Errorf("kdispatch: %s: unknown mode %d", op, int(mode))
	}
	n := len(fds)
	if n < 1 || n > MaxSlots {
		return nil, fmt.Errorf("kdispatch: %s %s: %d slots, want 1 to %d", op, mode, n, MaxSlots)
	}
	g := &Group{mode: mode, n: n, fds: slices.Clone(fds), cookies: make([]uint64, n), live: make([]bool, n)}
	defer func() {
		if err != nil {
			g.closeObjects()
		}
	}()
	for i, fd := range fds {
		if g.cookies[i], err = checkSocket(fd); err != nil {
			return nil, fmt.Errorf("kdispatch: %s %s: slot %d: %w", op, mode, i, err)
		}
		g.live[i] = true
	}
	if err := g.createMaps(); err != nil {
		return nil, fmt.Errorf("kdispatch: %s %s: %w", op, mode, err)
	}
	for i, fd := range fds {
		if err := g.m.sockets.Update(uint32(i), uint64(fd), ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("kdispatch: %s %s: put slot %d (fd %d) in the sockarray: %w", op, mode, i, fd, err)
		}
	}
	if err := g.writeLive(); err != nil {
		return nil, fmt.Errorf("kdispatch: %s %s: %w", op, mode, err)
	}
	g.prog, err = loadProgram(g.mode, g.n, g.m, g.tableSize(), ebpf.ProgramOptions{})
	if err != nil {
		return nil, fmt.Errorf("kdispatch: %s %s: %w", op, mode, err)
	}
	if err := attach(fds[0], g.prog); err != nil {
		return nil, fmt.Errorf("kdispatch: %s %s: slot 0 (fd %d): %w", op, mode, fds[0], err)
	}
	return g, nil
}

func (g *Group) tableSize() int {
	if g.mode == Sticky {
		return policy.MaglevSize
	}
	return 0
}

func (g *Group) createMaps() error {
	var err error
	newMap := func(spec *ebpf.MapSpec) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		if m, err = ebpf.NewMap(spec); err != nil {
			err = fmt.Errorf("create map %s: %w", spec.Name, err)
		}
		return m
	}
	n := uint32(g.n)
	g.m.sockets = newMap(&ebpf.MapSpec{Name: "ss_sockets", Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: n})
	g.m.live = newMap(&ebpf.MapSpec{Name: "ss_live", Type: ebpf.Array, KeySize: 4, ValueSize: 4 * (n + 1), MaxEntries: 1})
	g.m.chosen = newMap(&ebpf.MapSpec{Name: "ss_chosen", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: n + 1})
	switch g.mode {
	case RoundRobin:
		g.m.counter = newMap(&ebpf.MapSpec{Name: "ss_counter", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	case Sticky:
		g.m.table = newMap(&ebpf.MapSpec{Name: "ss_maglev", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: uint32(g.tableSize())})
	case LeastConn:
		g.m.counter = newMap(&ebpf.MapSpec{Name: "ss_counter", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		g.m.conns = newMap(&ebpf.MapSpec{Name: "ss_conns", Type: ebpf.Array, KeySize: 4, ValueSize: 8 * n, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	}
	if err != nil {
		return err
	}
	if g.m.conns != nil {
		if g.conns, err = MapConnCounts(g.m.conns.FD()); err != nil {
			return err
		}
	}
	return nil
}

// loadProgram assembles and loads mode's program.
func loadProgram(mode Mode, n int, m maps, tableSize int, opts ebpf.ProgramOptions) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         "ss_" + mode.String(),
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelect,
		Instructions: program(mode, n, m, tableSize),
		// No GPL-only helper is called, so the license string matters
		// to nobody; the kernel only checks it for those helpers.
		License: "",
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s program: %w", mode, err)
	}
	return prog, nil
}

// attach attaches prog to the reuseport group of fd (any member), replacing
// any program or cBPF filter it had.
func attach(fd int, prog *ebpf.Program) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog.FD()); err != nil {
		return fmt.Errorf("setsockopt SO_ATTACH_REUSEPORT_EBPF: %w", err)
	}
	return nil
}

// checkSocket refuses what the kernel would refuse with a less helpful
// error, and returns the socket's cookie.
func checkSocket(fd int) (uint64, error) {
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return 0, fmt.Errorf("fd %d: getsockopt SO_PROTOCOL: %w", fd, err)
	}
	if proto == unix.IPPROTO_MPTCP {
		return 0, fmt.Errorf("fd %d is an MPTCP socket, which the kernel cannot steer with BPF; create it with net.ListenConfig.SetMultipathTCP(false): %w", fd, errUnsupported)
	}
	on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT)
	if err != nil {
		return 0, fmt.Errorf("fd %d: getsockopt SO_REUSEPORT: %w", fd, err)
	}
	if on == 0 {
		return 0, fmt.Errorf("fd %d: SO_REUSEPORT is not set, so the socket is in no group", fd)
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("fd %d: getsockopt SO_COOKIE: %w", fd, err)
	}
	return cookie, nil
}

// writeLive stores the list of live slots, and for sticky the Maglev table
// (only the entries that change). Callers hold g.mu or own g alone.
func (g *Group) writeLive() error {
	list := make([]uint32, g.n+1)
	for s, ok := range g.live {
		if ok {
			list[0]++
			list[list[0]] = uint32(s)
		}
	}
	if g.mode == Sticky {
		next, err := policy.NewMaglev(g.live, g.tableSize())
		if err != nil {
			return err
		}
		var keys, values []uint32
		newTable := next.Table()
		var old []uint32
		if g.maglev != nil {
			old = g.maglev.Table()
		}
		for e, s := range newTable {
			if old == nil || old[e] != s {
				keys = append(keys, uint32(e))
				values = append(values, s)
			}
		}
		// Table first: a slot coming back is listed only once its entries
		// are in place, and one going down loses its entries before it
		// leaves the list (nothing else reads the list in sticky mode, but
		// the order is the safe one).
		if len(keys) > 0 {
			if _, err := g.m.table.BatchUpdate(keys, values, nil); err != nil {
				return fmt.Errorf("write maglev table (%d entries): %w", len(keys), err)
			}
		}
		g.maglev = next
	}
	if err := g.m.live.Update(uint32(0), list, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write live slots: %w", err)
	}
	return nil
}

// Mode returns the group's dispatch mode.
func (g *Group) Mode() Mode { return g.mode }

// Len returns the number of slots.
func (g *Group) Len() int { return g.n }

// SetLive says whether slot may be chosen for new connections. A slot that
// is not live keeps its socket in the group and what is queued on it.
// Under Sticky only the clients of that slot move (to the other live
// slots), and they come back when it is live again.
func (g *Group) SetLive(slot int, live bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkSlot("set live", slot); err != nil {
		return err
	}
	if g.live[slot] == live {
		return nil
	}
	g.live[slot] = live
	if err := g.writeLive(); err != nil {
		g.live[slot] = !live
		return fmt.Errorf("kdispatch: set slot %d live=%v: %w", slot, live, err)
	}
	return nil
}

// Live returns which slots may be chosen.
func (g *Group) Live() []bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.live)
}

// SetSocket makes fd slot's socket. A replacement worker that inherits
// its slot's socket needs no call; a slot revived with a fresh socket
// (bound to the same address with SO_REUSEPORT) does. The program is
// attached again through fd, which is harmless when fd joined the existing
// group and necessary when every earlier socket was closed and fd started a
// new one. The Group does not take fd; the old socket is not closed.
func (g *Group) SetSocket(slot, fd int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkSlot("set socket", slot); err != nil {
		return err
	}
	cookie, err := checkSocket(fd)
	if err != nil {
		return fmt.Errorf("kdispatch: set socket of slot %d: %w", slot, err)
	}
	if err := g.m.sockets.Update(uint32(slot), uint64(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("kdispatch: set socket of slot %d: put fd %d in the sockarray: %w", slot, fd, err)
	}
	if err := attach(fd, g.prog); err != nil {
		return fmt.Errorf("kdispatch: set socket of slot %d: fd %d: %w", slot, fd, err)
	}
	g.fds[slot], g.cookies[slot] = fd, cookie
	return nil
}

// Counts returns, per slot, how many connections (or datagrams) the
// program has sent to it since the Group was created.
func (g *Group) Counts() ([]uint64, error) {
	all, err := g.chosen()
	if err != nil {
		return nil, err
	}
	return all[:g.n], nil
}

// Fallbacks returns how many connections the program left to the
// kernel's hash: none was live, or the chosen socket could not be
// selected (its slot had no socket at that moment).
func (g *Group) Fallbacks() (uint64, error) {
	all, err := g.chosen()
	if err != nil {
		return 0, err
	}
	return all[g.n], nil
}

func (g *Group) chosen() ([]uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, fmt.Errorf("kdispatch: read counters: %w", errClosed)
	}
	out := make([]uint64, g.n+1)
	var perCPU []uint64
	for i := range out {
		if err := g.m.chosen.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("kdispatch: read counter of slot %d: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// ConnCounts returns the Group's own mapping of the open-connection counts
// under LeastConn (nil otherwise), valid until Close. The master uses it to
// clear a dead worker's slot (Store(slot, 0)): the connections it counted
// died with it.
func (g *Group) ConnCounts() *ConnCounts { return g.conns }

// ConnCountsFD returns the descriptor of the open-connection counts map
// under LeastConn, -1 otherwise. It stays owned by the Group: send a
// duplicate to each worker, which maps it with [MapConnCounts].
func (g *Group) ConnCountsFD() int {
	if g.m.conns == nil {
		return -1
	}
	return g.m.conns.FD()
}

var errClosed = errors.New("group closed")

func (g *Group) checkSlot(op string, slot int) error {
	if g.closed {
		return fmt.Errorf("kdispatch: %s: %w", op, errClosed)
	}
	if slot < 0 || slot >= g.n {
		return fmt.Errorf("kdispatch: %s: slot %d out of range 0..%d", op, slot, g.n-1)
	}
	return nil
}

// Close detaches the program from the group, so the kernel's hash
// dispatches again, and closes every map and the program. It detaches
// through a slot socket still open under the same descriptor (checked by
// cookie); when none is, the sockets are gone and the program with them.
// Close it before closing the sockets.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var err error
	for i, fd := range g.fds {
		if c, cerr := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); cerr != nil || c != g.cookies[i] {
			continue
		}
		if derr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0); derr != nil && !errors.Is(derr, unix.ENOENT) {
			err = fmt.Errorf("kdispatch: close: detach through slot %d (fd %d): %w", i, fd, derr)
		}
		break
	}
	return errors.Join(err, g.closeObjects())
}

// closeObjects closes what the Group created.
func (g *Group) closeObjects() error {
	var errs []error
	if g.conns != nil {
		errs = append(errs, g.conns.Close())
	}
	if g.prog != nil {
		errs = append(errs, g.prog.Close())
	}
	for _, m := range []*ebpf.Map{g.m.sockets, g.m.live, g.m.chosen, g.m.counter, g.m.table, g.m.conns} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kdispatch: close: %w", err)
	}
	return nil
}
