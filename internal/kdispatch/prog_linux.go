package kdispatch

import (
	"encoding/binary"
	"math"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/sockshare/sockshare/policy"
)

// The programs are generated per group: the slot count n and the table
// size are constants in the code, which lets the verifier bound every index.
//
// Stack layout (r10 = frame pointer):
//
//	fp-4   u32 slot key for bpf_sk_select_reuseport and the counters
//	fp-8   u32 key of single-entry maps (0), then of the Maglev table
//	fp-24  16 bytes: the source address read from the packet (sticky)
//	fp-64  48 bytes: the leastconn scan's context (leastconn)
//
// Registers: r6 holds the context throughout; r7 the chosen slot; r8 and
// r9 the live list and its length (rr, leastconn).

// skPass is SK_PASS, the return value of an SK_REUSEPORT program that
// accepts the packet.
const skPass = 1 // SK_DROP (0) is never returned: a failure falls back to the hash

// bpfHdrStartNet is BPF_HDR_START_NET of bpf_skb_load_bytes_relative:
// offsets relative to the network header.
const bpfHdrStartNet = 1

// Offsets of the 32-bit protocol field (skb->protocol, big-endian
// ethertype) in the program contexts.
const (
	reuseportMdEthProtocol = 20 // struct sk_reuseport_md.eth_protocol
	skBuffProtocol         = 16 // struct __sk_buff.protocol (tests)
)

// Labels.
const (
	lblSelect   = "select"
	lblCount    = "count"
	lblPass     = "pass"
	lblFallback = "fallback"
	lblV4       = "v4"
	lblV6       = "v6"
	lblV6Chain  = "v6chain"
	lblHashed   = "hashed"
	lblScan     = "leastconn_scan"
	lblScanNext = "scan_next"
	lblScanStop = "scan_stop"
)

// maps are the maps a program refers to; those a mode does not use are nil.
type maps struct {
	sockets *ebpf.Map // REUSEPORT_SOCKARRAY: slot -> socket
	live    *ebpf.Map // ARRAY[1] of u32{n, slot0, ..., slot(n-1)}: the live slots
	chosen  *ebpf.Map // PERCPU_ARRAY[slots+1] of u64: per-slot picks, then fallbacks
	counter *ebpf.Map // ARRAY[1] of u64: rotation counter (rr, leastconn)
	table   *ebpf.Map // ARRAY[size] of u32: Maglev table (sticky)
	conns   *ebpf.Map // mmapable ARRAY[1] of s64[slots]: open connections (leastconn)
}

// ethertype returns the value a program reads from a context's protocol
// field for the ethertype: the big-endian u16 as it lies in memory,
// loaded in host order.
func ethertype(t uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], t)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// imm32 reinterprets a u32 constant as the signed immediate of an
// instruction (32-bit ALU operations use its bits as they are).
func imm32(v uint32) int32 { return int32(v) }

// fetchAdd returns `src = atomic_fetch_add((u64 *)(dst + off), src)`.
//
// cilium/ebpf (v0.19 to at least v0.22) encodes the instruction's immediate
// from its Constant field, not from the opcode, so asm.FetchAdd.Mem alone
// yields imm 0: BPF_ADD without BPF_FETCH, a plain `lock add` that leaves
// src unchanged (every connection would see the same "old" value). imm 1 is
// BPF_ADD|BPF_FETCH. TestFetchAddVerifierView pins this.
func fetchAdd(dst, src asm.Register, off int16) asm.Instruction {
	ins := asm.FetchAdd.Mem(dst, src, asm.DWord, off)
	ins.Constant = 1 // BPF_ADD | BPF_FETCH
	return ins
}

// mix32 emits policy's mix32 (murmur3 fmix32) on the low 32 bits of r,
// with tmp as scratch.
func mix32(r, tmp asm.Register) asm.Instructions {
	step := func(shift int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg32(tmp, r),
			asm.RSh.Imm32(tmp, shift),
			asm.Xor.Reg32(r, tmp),
		}
	}
	var insns asm.Instructions
	insns = append(insns, step(16)...)
	insns = append(insns, asm.Mul.Imm32(r, imm32(policy.Mix32Mul1)))
	insns = append(insns, step(13)...)
	insns = append(insns, asm.Mul.Imm32(r, imm32(policy.Mix32Mul2)))
	insns = append(insns, step(16)...)
	return insns
}

// hashSource emits policy.HashIP of the packet's source address into r7,
// then jumps to lblHashed; on an unknown protocol or a failed read it jumps
// to lblFallback. protoOff is the context's protocol field offset, so that
// tests can run the same code as a socket filter. r6 must hold the context.
func hashSource(protoOff int16) asm.Instructions {
	loadAddr := func(off, size int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, off),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -24),
			asm.Mov.Imm(asm.R4, size),
			asm.Mov.Imm(asm.R5, bpfHdrStartNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, lblFallback),
		}
	}
	// word loads the i-th big-endian u32 of the address into r.
	word := func(r asm.Register, i int16) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(r, asm.RFP, -24+4*i, asm.Word),
			asm.HostTo(asm.BE, r, asm.Word),
		}
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, protoOff, asm.Word),
		asm.JEq.Imm(asm.R2, ethertype(0x0800), lblV4),
		asm.JEq.Imm(asm.R2, ethertype(0x86dd), lblV6),
		asm.Ja.Label(lblFallback),
	}
	// IPv4: the source address is at offset 12 of the header.
	v4 := loadAddr(12, 4)
	v4[0] = v4[0].WithSymbol(lblV4)
	insns = append(insns, v4...)
	insns = append(insns, word(asm.R7, 0)...)
	insns = append(insns, mix32(asm.R7, asm.R1)...)
	insns = append(insns, asm.Ja.Label(lblHashed))
	// IPv6: the source address is at offset 8. ::ffff:a.b.c.d hashes as
	// a.b.c.d; anything else chains its four words.
	v6 := loadAddr(8, 16)
	v6[0] = v6[0].WithSymbol(lblV6)
	insns = append(insns, v6...)
	insns = append(insns, word(asm.R1, 0)...)
	insns = append(insns, asm.JNE.Imm(asm.R1, 0, lblV6Chain))
	insns = append(insns, word(asm.R1, 1)...)
	insns = append(insns, asm.JNE.Imm(asm.R1, 0, lblV6Chain))
	insns = append(insns, word(asm.R1, 2)...)
	insns = append(insns, asm.JNE.Imm(asm.R1, 0xffff, lblV6Chain))
	insns = append(insns, word(asm.R7, 3)...)
	insns = append(insns, mix32(asm.R7, asm.R1)...)
	insns = append(insns, asm.Ja.Label(lblHashed))
	insns = append(insns, asm.Mov.Imm(asm.R7, 0).WithSymbol(lblV6Chain))
	for i := range int16(4) {
		insns = append(insns, word(asm.R1, i)...)
		insns = append(insns, asm.Xor.Reg32(asm.R7, asm.R1))
		insns = append(insns, mix32(asm.R7, asm.R1)...)
	}
	insns = append(insns, asm.Ja.Label(lblHashed))
	return insns
}

// lookupKey0 emits r0 = lookup(m, 0), jumping to lblFallback on NULL.
func lookupKey0(m *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, lblFallback),
	}
}

// program returns the instructions of mode's program for n slots.
func program(mode Mode, n int, m maps, tableSize int) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	switch mode {
	case RoundRobin:
		insns = append(insns, roundRobin(n, m)...)
	case Sticky:
		insns = append(insns, sticky(n, m, tableSize)...)
	case LeastConn:
		insns = append(insns, leastConn(n, m)...)
	}
	insns = append(insns, selectAndCount(n, m)...)
	if mode == LeastConn {
		// A callback needs BTF function info for every function, the
		// main one included; the kernel refuses it otherwise ("missing
		// btf func_info").
		insns[0] = btf.WithFuncMetadata(insns[0], &btf.Func{
			Name:    "ss_" + mode.String(),
			Type:    &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{{Name: "ctx", Type: &btf.Pointer{Target: &btf.Struct{Name: "sk_reuseport_md"}}}}},
			Linkage: btf.GlobalFunc,
		})
		scan := leastConnScan(n)
		scan[0] = btf.WithFuncMetadata(scan[0], &btf.Func{
			Name: lblScan,
			Type: &btf.FuncProto{Return: btfLong, Params: []btf.FuncParam{
				{Name: "index", Type: &btf.Int{Name: "unsigned int", Size: 4}},
				{Name: "ctx", Type: &btf.Pointer{Target: &btf.Void{}}},
			}},
			Linkage: btf.StaticFunc,
		})
		insns = append(insns, scan...) // a function after the main one
	}
	return insns
}

var btfLong = &btf.Int{Name: "long", Size: 8, Encoding: btf.Signed}

// roundRobin: slot = live[1 + counter++ % live[0]].
func roundRobin(n int, m maps) asm.Instructions {
	insns := lookupKey0(m.live)
	insns = append(insns,
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R9, asm.R8, 0, asm.Word), // live count
		asm.JEq.Imm(asm.R9, 0, lblFallback),
	)
	insns = append(insns, lookupKey0(m.counter)...)
	insns = append(insns,
		asm.Mov.Imm(asm.R1, 1),
		fetchAdd(asm.R0, asm.R1, 0), // r1 = old counter
		asm.Mod.Reg(asm.R1, asm.R9),
		asm.JGE.Imm(asm.R1, int32(n), lblFallback), // bounds the index for the verifier
		asm.LSh.Imm(asm.R1, 2),
		asm.Add.Reg(asm.R8, asm.R1),
		asm.LoadMem(asm.R7, asm.R8, 4, asm.Word),
		asm.Ja.Label(lblSelect),
	)
	return insns
}

// sticky: slot = table[HashIP(source) % size].
func sticky(n int, m maps, tableSize int) asm.Instructions {
	insns := hashSource(reuseportMdEthProtocol)
	insns = append(insns,
		asm.Mod.Imm32(asm.R7, imm32(uint32(tableSize))).WithSymbol(lblHashed),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, m.table.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, lblFallback),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.Ja.Label(lblSelect),
	)
	return insns
}

// leastConn scans the live slots from a rotating start and keeps the first
// with the strictly lowest count, so equal counts are served in turn.
//
// The scan is a bpf_loop (Linux 5.17) callback rather than an open loop:
// the verifier checks a callback until its state converges, whatever the
// slot count, while it walks an open loop once per iteration with a few
// states each that it cannot merge (measured: 150,000 instructions
// processed for 256 slots, over the 1,000,000 limit for 1024).
//
// The callback's context is a struct on this frame's stack at fp-64:
//
//	+0  live list pointer   +8  counts pointer   +16 start
//	+24 live count          +32 best slot (n: none yet)
//	+40 best count (MaxInt64: none yet)
func leastConn(n int, m maps) asm.Instructions {
	insns := lookupKey0(m.live)
	insns = append(insns,
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R9, asm.R8, 0, asm.Word),
		asm.JEq.Imm(asm.R9, 0, lblFallback),
		asm.JGT.Imm(asm.R9, int32(n), lblFallback), // a corrupt count
		asm.StoreMem(asm.RFP, -64, asm.R8, asm.DWord),
		asm.StoreMem(asm.RFP, -40, asm.R9, asm.DWord),
	)
	insns = append(insns, lookupKey0(m.counter)...)
	insns = append(insns,
		asm.Mov.Imm(asm.R7, 1),
		fetchAdd(asm.R0, asm.R7, 0),
		asm.Mod.Reg(asm.R7, asm.R9),
		asm.StoreMem(asm.RFP, -48, asm.R7, asm.DWord),
	)
	insns = append(insns, lookupKey0(m.conns)...)
	insns = append(insns,
		asm.StoreMem(asm.RFP, -56, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R1, int32(n)),
		asm.StoreMem(asm.RFP, -32, asm.R1, asm.DWord),
		asm.LoadImm(asm.R1, math.MaxInt64, asm.DWord),
		asm.StoreMem(asm.RFP, -24, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9), // iterations: the live count
		asm.Instruction{OpCode: asm.LoadImmOp(asm.DWord), Dst: asm.R2, Src: asm.PseudoFunc, Constant: -1}.WithReference(lblScan),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -64),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnLoop.Call(),
		asm.LoadMem(asm.R7, asm.RFP, -32, asm.DWord),
		asm.Ja.Label(lblSelect),
	)
	return insns
}

// leastConnScan is bpf_loop's callback for leastConn: r1 the iteration
// k, r2 the context. It returns 0 to go on, 1 to stop.
func leastConnScan(n int) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R3, asm.R2, 16, asm.DWord).WithSymbol(lblScan), // start
		asm.Add.Reg(asm.R3, asm.R1),
		asm.LoadMem(asm.R4, asm.R2, 24, asm.DWord), // live count, not 0
		asm.Mod.Reg(asm.R3, asm.R4),
		asm.JGE.Imm(asm.R3, int32(n), lblScanStop), // bounds the index for the verifier
		asm.LSh.Imm(asm.R3, 2),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.DWord),
		asm.Add.Reg(asm.R5, asm.R3),
		asm.LoadMem(asm.R3, asm.R5, 4, asm.Word), // slot
		asm.JGE.Imm(asm.R3, int32(n), lblScanNext),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.LSh.Imm(asm.R4, 3),
		asm.LoadMem(asm.R5, asm.R2, 8, asm.DWord),
		asm.Add.Reg(asm.R5, asm.R4),
		asm.LoadMem(asm.R5, asm.R5, 0, asm.DWord),  // its open connections
		asm.LoadMem(asm.R4, asm.R2, 40, asm.DWord), // best count
		asm.JSGE.Reg(asm.R5, asm.R4, lblScanNext),
		asm.StoreMem(asm.R2, 32, asm.R3, asm.DWord),
		asm.StoreMem(asm.R2, 40, asm.R5, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(lblScanNext),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol(lblScanStop),
		asm.Return(),
	}
}

// selectAndCount is the common tail: select slot r7 (a slot outside 0..n-1
// falls back), count the pick per slot, or count a fallback and leave the
// choice to the kernel's hash.
func selectAndCount(n int, m maps) asm.Instructions {
	return asm.Instructions{
		asm.JGE.Imm(asm.R7, int32(n), lblFallback).WithSymbol(lblSelect),
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, m.sockets.FD()),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -4),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.JNE.Imm(asm.R0, 0, lblFallback),
		asm.LoadMapPtr(asm.R1, m.chosen.FD()).WithSymbol(lblCount),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, lblPass),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord), // per-CPU: no atomic needed
		asm.Mov.Imm(asm.R0, skPass).WithSymbol(lblPass),
		asm.Return(),
		// Without a selection SK_PASS means: the kernel's hash chooses.
		asm.Mov.Imm(asm.R1, int32(n)).WithSymbol(lblFallback),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word),
		asm.Ja.Label(lblCount),
	}
}
