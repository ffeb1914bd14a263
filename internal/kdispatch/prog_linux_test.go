package kdispatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sockshare/sockshare/policy"
)

// The trap: asm.FetchAdd.Mem alone marshals with imm 0 (no BPF_FETCH);
// fetchAdd must marshal with imm 1 (BPF_ADD|BPF_FETCH).
func TestFetchAddEncoding(t *testing.T) {
	imm := func(ins asm.Instruction) uint32 {
		var buf bytes.Buffer
		if _, err := ins.Marshal(&buf, binary.LittleEndian); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint32(buf.Bytes()[4:8])
	}
	if got := imm(fetchAdd(asm.R0, asm.R1, 0)); got != 0x01 {
		t.Fatalf("fetchAdd marshals imm %#x; want 0x01 (BPF_ADD|BPF_FETCH)", got)
	}
	if got := imm(asm.FetchAdd.Mem(asm.R0, asm.R1, asm.DWord, 0)); got != 0x01 {
		t.Logf("cilium/ebpf still marshals asm.FetchAdd.Mem with imm %#x (no BPF_FETCH): the trap fetchAdd works around", got)
	}
}

// What the verifier sees of the rr program: a fetching atomic add, not a
// plain `lock` add whose source register keeps the constant 1.
func TestFetchAddVerifierView(t *testing.T) {
	needKernelDispatch(t)
	sg := newSlotGroup(t, 2)
	g := newGroup(t, RoundRobin, sg.fds)
	prog, err := loadProgram(RoundRobin, 2, g.m, 0, ebpf.ProgramOptions{LogLevel: ebpf.LogLevelInstruction})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	log := prog.VerifierLog
	if !strings.Contains(log, "r1 = atomic64_fetch_add((u64 *)(r0 +0), r1)") || strings.Contains(log, "lock *(u64 *)") {
		t.Fatalf("verifier log lacks the fetching add (or has a plain lock add):\n%s", log)
	}
}

// Every program loads at the largest group, so the verifier's cost of the
// leastconn loop stays within its limits.
func TestProgramsLoadAtMaxSlots(t *testing.T) {
	needKernelDispatch(t)
	for _, mode := range []Mode{RoundRobin, Sticky, LeastConn} {
		g := &Group{mode: mode, n: MaxSlots}
		if err := g.createMaps(); err != nil {
			t.Fatal(err)
		}
		prog, err := loadProgram(mode, MaxSlots, g.m, g.tableSize(), ebpf.ProgramOptions{})
		if err != nil {
			t.Fatalf("%s at %d slots: %v", mode, MaxSlots, err)
		}
		prog.Close()
		g.closeObjects()
	}
}

// The BPF hash of a packet's source address equals policy.HashIP, run in
// the kernel through BPF_PROG_TEST_RUN: the same instructions as the
// sticky program's, in a socket filter that returns the hash (a
// SK_REUSEPORT program cannot be test-run).
func TestHashAgreesWithBPF(t *testing.T) {
	needKernelDispatch(t)
	const failed = 0xdead
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	insns = append(insns, hashSource(skBuffProtocol)...)
	insns = append(insns,
		asm.Mov.Reg32(asm.R0, asm.R7).WithSymbol(lblHashed),
		asm.Return(),
		asm.Mov.Imm(asm.R0, failed).WithSymbol(lblFallback),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: insns, License: ""})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()

	rng := rand.New(rand.NewPCG(5, 6))
	var addrs []netip.Addr
	for range 500 {
		var b4 [4]byte
		var b16 [16]byte
		binary.BigEndian.PutUint32(b4[:], rng.Uint32())
		binary.BigEndian.PutUint64(b16[:8], rng.Uint64())
		binary.BigEndian.PutUint64(b16[8:], rng.Uint64())
		addrs = append(addrs, netip.AddrFrom4(b4), netip.AddrFrom16(b16), netip.AddrFrom16(netip.AddrFrom4(b4).As16()))
	}
	for _, s := range []string{"127.0.0.1", "0.0.0.0", "255.255.255.255", "::", "::1", "::ffff:10.0.0.1", "::fffe:10.0.0.1", "0:0:1:ffff::1"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	for _, a := range addrs {
		got, _, err := prog.Test(packetFrom(a))
		if err != nil {
			t.Fatal(err)
		}
		if want := policy.HashIP(a); got != want {
			t.Fatalf("BPF hash of %v = %#x; policy.HashIP = %#x", a, got, want)
		}
	}
}

// packetFrom returns an Ethernet frame carrying an IPv4 (when a is a plain
// IPv4 address) or IPv6 header with source address a.
func packetFrom(a netip.Addr) []byte {
	eth := make([]byte, 14)
	if a.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 20)
		ip[8], ip[9] = 64, 17
		src := a.As4()
		copy(ip[12:], src[:])
		copy(ip[16:], []byte{127, 0, 0, 1})
		return append(eth, ip...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	ip[6], ip[7] = 17, 64
	src := a.As16()
	copy(ip[8:], src[:])
	ip[39] = 1
	return append(eth, ip...)
}

func ExampleMode_String() {
	fmt.Println(RoundRobin, Sticky, LeastConn)
	// Output: rr sticky leastconn
}
