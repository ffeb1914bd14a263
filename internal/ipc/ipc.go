package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxMessage bounds the encoded size of one message, payload included.
const MaxMessage = 64 << 10

// MaxIDs bounds the connection ids one message may name in each list.
const MaxIDs = 4096

// MaxFDs bounds the descriptors one message may carry.
const MaxFDs = 253

// MaxReplyFDs bounds the descriptors of a ListenReply: the socket, and
// under kernel leastconn the map of open-connection counts.
const MaxReplyFDs = 2

// MaxString bounds one string field (network, address, policy, error text).
const MaxString = 1024

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("malformed ipc message")

// Type identifies a message.
type Type uint8

// Message types. Worker to master: Hello, Listen, Ready, Ack, ListenerClosed,
// User. Master to worker: ListenReply, Conns, User.
const (
	Hello          Type = 1 // worker is up: PID
	Listen         Type = 2 // worker's Listen: Seq, Network, Addr, Policy, Nth
	ListenReply    Type = 3 // answer to Listen: Seq, Listener, Policy, Network, Addr, Errno, Err, Flags; 0 or 1 fd
	Conns          Type = 4 // handed connections: IDs, one fd each
	Ack            Type = 5 // IDs taken by Accept, Returned unserved, Closed after use
	ListenerClosed Type = 6 // worker closed its listener: Listener
	Ready          Type = 7 // worker says it is ready to serve
	User           Type = 8 // user payload, either direction
	maxType             = User
)

var typeNames = [...]string{"", "hello", "listen", "listen-reply", "conns", "ack", "listener-closed", "ready", "user"}

func (t Type) String() string {
	if t >= 1 && t <= maxType {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Flags on ListenReply.
const (
	// FlagFallback: the requested policy does not apply to this network
	// and Policy says what was used instead.
	FlagFallback uint32 = 1 << iota
	// FlagTrackClose: the worker must report every close of a handed
	// connection (leastconn).
	FlagTrackClose
	// FlagPolicyConflict: Err is a policy conflict (the address is
	// already served under another policy), so that the worker's error
	// can match the sentinel the master's did.
	FlagPolicyConflict
	// FlagUnsupported: Err is something this platform cannot do (for
	// example cBPF steering off Linux): errors.ErrUnsupported in the worker.
	FlagUnsupported
)

// Msg is one decoded message. Only the fields of its Type are meaningful.
type Msg struct {
	Type     Type
	Seq      uint32
	PID      uint32
	Network  string
	Addr     string
	Policy   string
	Nth      uint32
	Listener uint32
	Errno    uint32
	Err      string
	Flags    uint32
	Window   uint32   // ListenReply: connections that may be in flight to the worker
	NumFDs   uint32   // ListenReply: descriptors that accompany it (0 to MaxReplyFDs)
	IDs      []uint64 // Conns: handed, one per fd. Ack: taken.
	Returned []uint64 // Ack: handed back unserved, to re-dispatch
	Closed   []uint64 // Ack: closed by the worker after being taken
	Payload  []byte   // User
}

// ExpectedFDs says how many descriptors must accompany m.
func (m *Msg) ExpectedFDs() int {
	switch m.Type {
	case Conns:
		return len(m.IDs)
	case ListenReply:
		return int(m.NumFDs)
	}
	return 0
}

// ConnID makes a connection id from a listener id and a per-listener count.
// The listener id occupies the top 24 bits.
func ConnID(listener uint32, n uint64) uint64 { return uint64(listener)<<40 | n&(1<<40-1) }

// ListenerOf returns the listener id part of a connection id.
func ListenerOf(id uint64) uint32 { return uint32(id >> 40) }

// Append encodes m after dst and returns the extended slice.
func Append(dst []byte, m *Msg) ([]byte, error) {
	if m.Type < 1 || m.Type > maxType {
		return dst, fmt.Errorf("ipc: encode: unknown %v", m.Type)
	}
	start := len(dst)
	dst = append(dst, byte(m.Type))
	dst = binary.AppendUvarint(dst, uint64(m.Seq))
	switch m.Type {
	case Hello:
		dst = binary.AppendUvarint(dst, uint64(m.PID))
	case Listen:
		dst = appendString(dst, m.Network)
		dst = appendString(dst, m.Addr)
		dst = appendString(dst, m.Policy)
		dst = binary.AppendUvarint(dst, uint64(m.Nth))
	case ListenReply:
		dst = binary.AppendUvarint(dst, uint64(m.Listener))
		dst = appendString(dst, m.Policy)
		dst = appendString(dst, m.Network)
		dst = appendString(dst, m.Addr)
		dst = binary.AppendUvarint(dst, uint64(m.Errno))
		dst = appendString(dst, m.Err)
		dst = binary.AppendUvarint(dst, uint64(m.Flags))
		dst = binary.AppendUvarint(dst, uint64(m.Window))
		dst = binary.AppendUvarint(dst, uint64(m.NumFDs))
	case Conns:
		dst = appendIDs(dst, m.IDs)
	case Ack:
		dst = appendIDs(dst, m.IDs)
		dst = appendIDs(dst, m.Returned)
		dst = appendIDs(dst, m.Closed)
	case ListenerClosed:
		dst = binary.AppendUvarint(dst, uint64(m.Listener))
	case Ready:
	case User:
		dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
		dst = append(dst, m.Payload...)
	}
	if len(dst)-start > MaxMessage {
		return dst[:start], fmt.Errorf("ipc: encode %v: %d bytes exceeds the %d-byte limit", m.Type, len(dst)-start, MaxMessage)
	}
	for _, s := range []string{m.Network, m.Addr, m.Policy, m.Err} {
		if len(s) > MaxString {
			return dst[:start], fmt.Errorf("ipc: encode %v: string field of %d bytes exceeds %d", m.Type, len(s), MaxString)
		}
	}
	for _, l := range [][]uint64{m.IDs, m.Returned, m.Closed} {
		if len(l) > MaxIDs {
			return dst[:start], fmt.Errorf("ipc: encode %v: %d ids exceed %d", m.Type, len(l), MaxIDs)
		}
	}
	if m.Type == Conns && len(m.IDs) > MaxFDs || m.NumFDs > MaxReplyFDs {
		return dst[:start], fmt.Errorf("ipc: encode %v: too many descriptors", m.Type)
	}
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendIDs(dst []byte, ids []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

// Decode parses one message. It never panics; every error wraps
// ErrMalformed. Slices in the result do not alias b except Payload, which
// is copied.
func Decode(b []byte) (Msg, error) {
	var m Msg
	if len(b) > MaxMessage {
		return m, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrMalformed, len(b), MaxMessage)
	}
	d := decoder{b: b}
	t := d.byte()
	if d.err == nil && (t < 1 || t > byte(maxType)) {
		return m, fmt.Errorf("%w: unknown type %d", ErrMalformed, t)
	}
	m.Type = Type(t)
	m.Seq = d.u32()
	switch m.Type {
	case Hello:
		m.PID = d.u32()
	case Listen:
		m.Network = d.str()
		m.Addr = d.str()
		m.Policy = d.str()
		m.Nth = d.u32()
	case ListenReply:
		m.Listener = d.u32()
		m.Policy = d.str()
		m.Network = d.str()
		m.Addr = d.str()
		m.Errno = d.u32()
		m.Err = d.str()
		m.Flags = d.u32()
		m.Window = d.u32()
		m.NumFDs = d.u32()
		if d.err == nil && m.NumFDs > MaxReplyFDs {
			d.fail("listen reply with %d descriptors", m.NumFDs)
		}
	case Conns:
		m.IDs = d.ids()
		if d.err == nil && len(m.IDs) > MaxFDs {
			d.fail("%d connections in one message exceed %d", len(m.IDs), MaxFDs)
		}
		if d.err == nil && len(m.IDs) == 0 {
			d.fail("conns message with no connections")
		}
	case Ack:
		m.IDs = d.ids()
		m.Returned = d.ids()
		m.Closed = d.ids()
	case ListenerClosed:
		m.Listener = d.u32()
	case Ready:
	case User:
		n := d.uvarint()
		if d.err == nil && n > uint64(len(d.b)) {
			d.fail("payload length %d past the end", n)
		}
		if d.err == nil {
			m.Payload = append([]byte(nil), d.b[:n]...)
			d.b = d.b[n:]
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after %v", len(d.b), m.Type)
	}
	if d.err != nil {
		return Msg{}, d.err
	}
	return m, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("empty message")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("value %d overflows 32 bits", v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > MaxString {
		d.fail("string of %d bytes exceeds %d", n, MaxString)
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("string length %d past the end", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) ids() []uint64 {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > MaxIDs {
		d.fail("%d ids exceed %d", n, MaxIDs)
		return nil
	}
	// Each id takes at least one byte: refuse counts the input cannot hold
	// before allocating for them.
	if n > uint64(len(d.b)) {
		d.fail("%d ids past the end", n)
		return nil
	}
	if n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint()
	}
	if d.err != nil {
		return nil
	}
	return ids
}
