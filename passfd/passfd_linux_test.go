package passfd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// passCredOpt is SO_PASSCRED, for TestMalformed's credentials case.
const passCredOpt = unix.SO_PASSCRED

// TestTruncatedByRlimit lowers RLIMIT_NOFILE so that only three fds can be
// installed, then receives 50: the kernel installs three, drops the rest and
// sets MSG_CTRUNC, and Recv must close the three.
func TestTruncatedByRlimit(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	_, w := pipes(t, 1)
	fds := make([]int, 50)
	for i := range fds {
		fds[i] = w[0]
	}
	// Send before lowering the limit: Linux also counts in-flight fds
	// against the sender's RLIMIT_NOFILE.
	if err := Send(a, []byte("x"), fds); err != nil {
		t.Fatalf("Send: %v", err)
	}

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Restored twice: right after Recv, so the rest of the test runs at the
	// usual limit, and deferred, whatever happens in between.
	restore := func() error { return unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }
	defer restore()
	lim := old
	lim.Cur = uint64(limitLeaving(t, 3))
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("lowering RLIMIT_NOFILE to %d: %v", lim.Cur, err)
	}
	n, got, err := Recv(b, make([]byte, 8), len(fds))
	if rerr := restore(); rerr != nil {
		t.Fatalf("restoring RLIMIT_NOFILE: %v", rerr)
	}
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("Recv at RLIMIT_NOFILE: %v, want ErrTruncated", err)
	}
	if got != nil {
		t.Errorf("Recv returned fds=%v with an error", got)
	}
	if n != 1 {
		t.Errorf("Recv at RLIMIT_NOFILE returned n=%d; want the 1-byte payload with the error", n)
	}
	roundTrip(t, a, b, "next", w)
}

// limitLeaving returns the RLIMIT_NOFILE value below which exactly free fd
// numbers are unused: the kernel hands out the lowest free number, and only
// numbers below the limit.
func limitLeaving(t *testing.T, free int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := make(map[string]bool, len(ents))
	for _, e := range ents {
		open[e.Name()] = true
	}
	// The directory fd ReadDir used is closed again: its number was free.
	for fd := 0; ; fd++ {
		if !open[fmt.Sprint(fd)] || !isOpen(fd) {
			if free--; free == 0 {
				return fd + 1
			}
		}
	}
}

// cloexecChildEnv marks the child process in which TestRecvCloseOnExec runs
// under refuseRecvmsgWithoutCloexec's filter.
const cloexecChildEnv = "PASSFD_TEST_CLOEXEC_CHILD"

// inCloexecChild runs the calling test again in a child process (this test
// binary, the test selected by name) and reports true in the parent, whose
// work is then done: it has failed the test if the child did. In the child
// it installs refuseRecvmsgWithoutCloexec's filter and reports false, so
// the test goes on to its body. Where the kernel has no seccomp filters the
// child skips, and the parent reports false and runs the body itself.
func inCloexecChild(t *testing.T) (parentDone bool) {
	t.Helper()
	if os.Getenv(cloexecChildEnv) != "" {
		if err := refuseRecvmsgWithoutCloexec(); err != nil {
			t.Skipf("no seccomp filter: %v", err)
		}
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), cloexecChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("%s under a seccomp filter that refuses recvmsg without MSG_CMSG_CLOEXEC: %v\n%s", t.Name(), err, out)
	case bytes.Contains(out, []byte("--- SKIP: "+t.Name())):
		t.Logf("child skipped, running without the filter:\n%s", out)
		return false
	case !bytes.Contains(out, []byte("--- PASS: "+t.Name())):
		t.Fatalf("the child did not run %s:\n%s", t.Name(), out)
	}
	return true
}

// refuseRecvmsgWithoutCloexec makes every later recvmsg of this process, on
// every thread, that lacks MSG_CMSG_CLOEXEC fail with EPERM. Setting
// FD_CLOEXEC after recvmsg returns instead (as Go does where the kernel has
// no MSG_CMSG_CLOEXEC) leaves a window in which a concurrent fork+exec
// inherits the fd; no check of the flags after Recv returns can see that.
// It cannot be undone: call it only in a child process.
func refuseRecvmsgWithoutCloexec() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no seccomp filter written for %s", runtime.GOARCH)
	}
	// struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]. The low
	// half of args[2] (recvmsg's flags) is at 32 on these little-endian
	// architectures.
	const (
		offNr    = 0
		offArch  = 4
		offFlags = 16 + 2*8
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	filter := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 0, 4), // another ABI: allow
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_RECVMSG, 0, 2),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offFlags),
		jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, unix.MSG_CMSG_CLOEXEC, 0, 1),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)),
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// no_new_privs is per thread; TSYNC gives the filter (and, from a
	// thread that has it, no_new_privs) to every thread of the process.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_NO_NEW_PRIVS: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("seccomp SECCOMP_SET_MODE_FILTER: %w", errno)
	}
	runtime.KeepAlive(filter)
	return nil
}
