package kdispatch

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ConnCounts is a process's mapping of the open-connection counts that a
// [LeastConn] program reads: one int64 per slot in memory shared with the
// kernel, updated with atomic adds and no syscall. A worker maps it with
// [MapConnCounts] from the descriptor its master sent, then calls
// Add(slot, 1) when it accepts a connection and Add(slot, -1) when that
// connection closes. The methods are safe for concurrent use; none may be
// called after Close.
type ConnCounts struct {
	mem   []byte
	n     int
	close sync.Once
}

// bpfMapTypeArray is BPF_MAP_TYPE_ARRAY as /proc/<pid>/fdinfo prints it.
const bpfMapTypeArray = 2

// MapConnCounts maps the counts behind fd, a descriptor of the map that
// [Group.ConnCountsFD] returns (or a duplicate). The number of slots is
// read from /proc/self/fdinfo, which needs no privilege, unlike the bpf
// syscall. fd is not taken: it may be closed once this returns.
func MapConnCounts(fd int) (*ConnCounts, error) {
	info, err := mapInfo(fd)
	if err != nil {
		return nil, fmt.Errorf("kdispatch: map conn counts: %w", err)
	}
	if info["map_type"] != bpfMapTypeArray || info["max_entries"] != 1 ||
		info["map_flags"]&unix.BPF_F_MMAPABLE == 0 || info["value_size"]%8 != 0 || info["value_size"] == 0 {
		return nil, fmt.Errorf("kdispatch: map conn counts: fd %d is not a leastconn counts map (%v)", fd, info)
	}
	size := int(info["value_size"])
	page := os.Getpagesize()
	mem, err := unix.Mmap(fd, 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("kdispatch: map conn counts: mmap fd %d: %w", fd, err)
	}
	return &ConnCounts{mem: mem, n: size / 8}, nil
}

// mapInfo reads the numeric fields of /proc/self/fdinfo/<fd> for a BPF map.
func mapInfo(fd int) (map[string]uint64, error) {
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var n uint64
		if strings.HasPrefix(v, "0x") {
			n, err = strconv.ParseUint(v[2:], 16, 64)
		} else {
			n, err = strconv.ParseUint(v, 10, 64)
		}
		if err == nil {
			info[k] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := info["map_type"]; !ok {
		return nil, fmt.Errorf("fd %d is not a BPF map", fd)
	}
	return info, nil
}

func (c *ConnCounts) at(slot int) *int64 {
	if slot < 0 || slot >= c.n {
		panic(fmt.Sprintf("kdispatch: conn counts: slot %d out of range 0..%d", slot, c.n-1))
	}
	// The mapping is page-aligned, so every 8-byte slot is aligned for
	// atomic access; the kernel side reads it with plain 8-byte loads.
	return (*int64)(unsafe.Pointer(&c.mem[8*slot]))
}

// Len returns the number of slots.
func (c *ConnCounts) Len() int { return c.n }

// Add adds delta to slot's count and returns the new count. It panics for
// a slot out of range, as indexing a slice does.
func (c *ConnCounts) Add(slot int, delta int64) int64 { return atomic.AddInt64(c.at(slot), delta) }

// Load returns slot's count.
func (c *ConnCounts) Load(slot int) int64 { return atomic.LoadInt64(c.at(slot)) }

// Store sets slot's count, for the master clearing a dead worker's slot.
func (c *ConnCounts) Store(slot int, v int64) { atomic.StoreInt64(c.at(slot), v) }

// Close unmaps the counts. Calls after the first do nothing.
func (c *ConnCounts) Close() error {
	var err error
	c.close.Do(func() {
		if err = unix.Munmap(c.mem); err != nil {
			err = fmt.Errorf("kdispatch: unmap conn counts: %w", err)
		}
	})
	return err
}
