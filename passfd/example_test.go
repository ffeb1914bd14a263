//go:build unix

package passfd_test

import (
	"fmt"
	"io"
	"os"

	"github.com/sockshare/sockshare/passfd"
)

// A master hands the write end of a pipe to a worker, which writes through
// it. Here both ends live in one process; a real worker would receive remote
// as exec.Cmd.ExtraFiles[0] and call passfd.FileConn(os.NewFile(3, "ipc")).
func Example() {
	master, remote, err := passfd.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer master.Close()
	worker, err := passfd.FileConn(remote) // closes remote
	if err != nil {
		fmt.Println(err)
		return
	}
	defer worker.Close()

	r, w, err := os.Pipe()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	// Master: Send borrows the fd, so w stays open until Send returns. The
	// kernel then holds its own reference, so the master may close its copy.
	err = passfd.Send(master, []byte("log"), []int{int(w.Fd())})
	w.Close()
	if err != nil {
		fmt.Println(err)
		return
	}

	// Worker: it owns the received fds, so it wraps the one it uses in an
	// *os.File and closes any others.
	buf := make([]byte, 64)
	n, fds, err := passfd.Recv(worker, buf, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	logFile := os.NewFile(uintptr(fds[0]), string(buf[:n]))
	fmt.Fprintln(logFile, "hello from the worker")
	logFile.Close()

	out, _ := io.ReadAll(r)
	fmt.Printf("payload %q\n%s", buf[:n], out)
	// Output:
	// payload "log"
	// hello from the worker
}
