package passfd

import (
	"errors"
	"fmt"
	"strings"
)

// MaxFDsPerMessage is Linux's SCM_MAX_FD: the most fds one sendmsg may carry.
// Send splits larger sets into several datagrams of at most this many fds.
const MaxFDsPerMessage = 253

// MaxPayload is the largest payload Send accepts. It keeps one datagram well
// below the default unix socket send buffer (about 208 KiB on Linux), which
// is what bounds a SOCK_SEQPACKET record; Recv never reads more than this
// either, so a larger record fails with ErrTooLarge.
const MaxPayload = 64 << 10

var (
	// ErrTruncated reports that fds did not fit: the kernel set MSG_CTRUNC
	// (the control buffer, sized from maxFDs, was too small, or the receiver
	// reached RLIMIT_NOFILE and fds were dropped), or the peer sent more fds
	// than maxFDs. Recv has closed every fd that did arrive.
	ErrTruncated = errors.New("passfd: control message truncated: the kernel dropped fds (receive buffer too small or RLIMIT_NOFILE reached)")

	// ErrTooLarge reports a payload larger than the receiver's buffer (the
	// kernel set MSG_TRUNC) or, in Send, larger than MaxPayload.
	ErrTooLarge = errors.New("passfd: payload too large")

	// ErrUnsupported reports a platform without fd passing over unix sockets
	// (windows), or a kernel without AF_UNIX SOCK_SEQPACKET. It wraps
	// errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("passfd: fd passing over unix sockets: %w", errors.ErrUnsupported)

	// ErrMalformed reports a message that does not follow passfd's framing,
	// or control data that is not a well-formed SCM_RIGHTS message. The
	// connection is no longer trustworthy: close it.
	ErrMalformed = errors.New("passfd: malformed message")

	// ErrAborted reports that the sender gave up on a message it had started
	// to send in several datagrams (a later sendmsg failed, for example on a
	// bad fd). Every fd of that message has been closed; the connection stays
	// in sync and the next Recv reads the next message.
	ErrAborted = errors.New("passfd: message aborted by the sender")
)

// opError renders as "passfd: <op>: <detail>: <cause>: ..." and unwraps to
// every cause, so errors.Is works on each of them. The "passfd: " prefix of
// the sentinels (and of nested opErrors) is not repeated in the text.
type opError struct {
	op     string
	detail string
	errs   []error
}

func newError(op, detail string, errs ...error) error {
	return &opError{op: op, detail: detail, errs: errs}
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("passfd: ")
	b.WriteString(e.op)
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	for _, err := range e.errs {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(err.Error(), "passfd: "))
	}
	return b.String()
}

func (e *opError) Unwrap() []error { return e.errs }
