// Package passfd sends and receives open file descriptors, with a small
// payload, over a unix socket (SCM_RIGHTS). It knows nothing of policies or
// processes: sockshare uses it to hand listening sockets and accepted
// connections from the master to its workers.
//
// # Messages
//
// A message is a payload of at most MaxPayload bytes plus any number of fds.
// The socket must keep message boundaries: use SOCK_SEQPACKET (Socketpair
// makes one) or SOCK_DGRAM, never SOCK_STREAM. Each datagram starts with one
// framing byte written by passfd. Linux carries at most MaxFDsPerMessage
// (253, the kernel's SCM_MAX_FD) fds per sendmsg, so Send splits a larger
// set into datagrams of 253 whose framing byte says "more fds follow"; only
// the last datagram carries the payload. A single-datagram message is thus
// atomic on the wire, and concurrent Sends of up to 253 fds each are safe; a
// message of more fds takes several datagrams, so such Sends must be
// serialised per connection, and one goroutine at a time may Recv.
//
// If a later datagram of a batch fails to send (a bad fd, a closed peer),
// Send writes a one-byte abort marker: the receiver closes what it got of
// that message and Recv reports ErrAborted.
//
// # Who owns each fd
//
//   - Send borrows its fds: it never closes them, and the caller must not
//     close them until Send returns. Once sendmsg has returned, the kernel
//     holds its own reference to each open file until the peer receives or
//     discards it, so the caller may then close its copies.
//   - Recv returns fds that the caller owns, all close-on-exec, so a
//     concurrent fork+exec never inherits them. Close them, hand them to
//     os.NewFile, or pass them on.
//   - On every error Recv has already closed every fd it received, from
//     every control message of every datagram of the message, including fds
//     beyond maxFDs, and returns nil fds. ParseRights does the same.
//   - Fds that did not fit the receive buffer, or arrived while the receiver
//     was at RLIMIT_NOFILE, are dropped (closed) by the kernel, which sets
//     MSG_CTRUNC; Recv then closes the ones that did arrive and returns
//     ErrTruncated.
//   - Socketpair hands both ends to the caller. FileConn always closes the
//     *os.File it is given, because net.FileConn works on a dup.
//
// After ErrTruncated, ErrTooLarge or ErrAborted, Recv has read the whole
// message and the connection can carry on. After ErrMalformed or a read
// error the stream may be out of step: close the connection. A read
// deadline (SetReadDeadline) that expires between the datagrams of one
// message leaves its tail queued; the next Recv reports that tail as
// ErrMalformed and discards it.
//
// # Limits
//
// Besides the 253 fds per datagram, Linux refuses sendmsg with
// ETOOMANYREFS when the sending user has more fds in flight than its
// RLIMIT_NOFILE allows, and the receiver needs free fd slots below its own
// RLIMIT_NOFILE. Recv sizes its control buffer from maxFDs, so a peer that
// sends more fds than the caller accepts costs the receiver nothing.
//
// # Platforms
//
// Linux is the primary target. On other unixes (darwin, the BSDs) Socketpair
// sets close-on-exec after creating the pair (under syscall.ForkLock) and
// Recv sets it with fcntl right after receipt, so there a fork+exec racing
// with a receive could inherit an fd; on Linux the kernel installs received
// fds close-on-exec (MSG_CMSG_CLOEXEC). Darwin may lack SOCK_SEQPACKET for
// AF_UNIX: Socketpair then fails with an error wrapping ErrUnsupported, and
// a SOCK_DGRAM pair from elsewhere still works with Send and Recv. The
// per-message fd limit of other kernels differs from Linux's; 253 fits within
// the ones passfd was written for. On windows every function returns an error
// wrapping ErrUnsupported, which also matches errors.ErrUnsupported.
package passfd
