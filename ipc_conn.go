//go:build unix

package sockshare

import (
	"net"

	"github.com/sockshare/sockshare/internal/ipc"
	"github.com/sockshare/sockshare/passfd"
)

// sendMsg encodes m and sends it over the IPC socket with fds, which stay
// the caller's. Master and worker both send this way. A message that does
// not encode is the caller's mistake, reported as encodeErr; sendErr is the
// socket's.
func sendMsg(conn *net.UnixConn, m *ipc.Msg, fds []int) (encodeErr, sendErr error) {
	var buf [256]byte
	b, err := ipc.Append(buf[:0], m)
	if err != nil {
		return err, nil
	}
	return nil, passfd.Send(conn, b, fds)
}
