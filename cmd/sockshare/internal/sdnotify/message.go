package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EnvNotifySocket names the variable that holds the address to notify.
const EnvNotifySocket = "NOTIFY_SOCKET"

// MaxDatagram is the largest message a Receiver accepts, in bytes; longer
// datagrams are dropped whole (systemd's own limit is larger, but no
// readiness message comes near it).
const MaxDatagram = 4096

var (
	// errUnsupported is returned where the protocol is not implemented
	// (every GOOS but Linux). It matches errors.ErrUnsupported.
	errUnsupported = fmt.Errorf("sdnotify: %w", errors.ErrUnsupported)
	// ErrBadAddr is wrapped when a notify address is neither an absolute
	// path nor an abstract "@name".
	ErrBadAddr = errors.New("sdnotify: notify address is neither an absolute path nor @abstract")
	// ErrBadName is wrapped when Listen's name cannot be part of an
	// abstract socket address (a NUL byte, or too long).
	ErrBadName = errors.New("sdnotify: bad receiver name")
)

// Message is one datagram, parsed.
type Message struct {
	// PID is the sending process, as the kernel reported it.
	PID int
	// Ready, Stopping and Reloading are READY=1, STOPPING=1, RELOADING=1.
	Ready, Stopping, Reloading bool
	// Status is STATUS=..., "" when absent.
	Status string
	// MainPID is MAINPID=..., 0 when absent or not a positive number.
	MainPID int
	// Fields holds every KEY=VALUE assignment of the datagram, the ones
	// above included, unknown keys too; the last one of a repeated key
	// wins.
	Fields map[string]string
}

// Parse reads a datagram: newline-separated KEY=VALUE assignments. Lines
// without '=' or with an empty key are skipped, as systemd skips them; a
// value keeps everything after the first '='.
func Parse(datagram []byte) Message {
	m := Message{Fields: map[string]string{}}
	for line := range strings.SplitSeq(string(datagram), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		m.Fields[k] = v
		switch k {
		case "READY":
			m.Ready = v == "1"
		case "STOPPING":
			m.Stopping = v == "1"
		case "RELOADING":
			m.Reloading = v == "1"
		case "STATUS":
			m.Status = v
		case "MAINPID":
			m.MainPID = 0
			if pid, err := strconv.Atoi(v); err == nil && pid > 0 {
				m.MainPID = pid
			}
		}
	}
	return m
}

// Notify sends state (for example "READY=1" or "STATUS=serving\nREADY=1")
// to $NOTIFY_SOCKET as one datagram. It returns nil without sending when
// the variable is unset or empty, so a process not started by a service
// manager need not check first.
func Notify(state string) error {
	addr := os.Getenv(EnvNotifySocket)
	if addr == "" {
		return nil
	}
	return NotifyTo(addr, state)
}
