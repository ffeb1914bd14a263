package ipc

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func roundTripCases() []Msg {
	return []Msg{
		{Type: Hello, Seq: 1, PID: 4242},
		{Type: Listen, Seq: 7, Network: "tcp", Addr: "127.0.0.1:0", Policy: "rr", Nth: 2},
		{Type: ListenReply, Seq: 7, Listener: 3, Policy: "shared", Network: "udp", Addr: "127.0.0.1:9000", Flags: FlagFallback, Window: 32, NumFDs: 1},
		{Type: ListenReply, Seq: 8, Errno: 98, Err: "address already in use"},
		{Type: Conns, IDs: []uint64{ConnID(3, 1), ConnID(3, 2)}},
		{Type: Ack, IDs: []uint64{1, 2, 3}, Returned: []uint64{9}, Closed: []uint64{1 << 50}},
		{Type: ListenerClosed, Listener: 5},
		{Type: Ready, Seq: 2},
		{Type: User, Seq: 3, Payload: []byte("hi")},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range roundTripCases() {
		b, err := Append(nil, &m)
		if err != nil {
			t.Fatalf("Append(%v): %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%v): %v", m.Type, err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Errorf("%v round trip (-want +got):\n%s", m.Type, d)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Append(nil, &Msg{Type: Listen, Network: "tcp", Addr: "x"})
	cases := map[string][]byte{
		"empty":           {},
		"unknown type":    {99, 0},
		"zero type":       {0, 0},
		"truncated":       good[:len(good)-2],
		"trailing":        append(append([]byte{}, good...), 0),
		"huge string":     {byte(Listen), 0, 0xff, 0xff, 0x03},
		"ids past end":    {byte(Ack), 0, 100},
		"too many ids":    {byte(Ack), 0, 0xff, 0xff, 0x03},
		"empty conns":     {byte(Conns), 0, 0},
		"bad varint":      {byte(Hello), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"seq overflow":    {byte(Hello), 0xff, 0xff, 0xff, 0xff, 0x10, 0},
		"payload past":    {byte(User), 0, 5, 'a'},
		"reply three fds": {byte(ListenReply), 0, 0, 0, 0, 0, 0, 0, 0, 0, 3},
		"oversized blob":  make([]byte, MaxMessage+1),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode error = %v; want ErrMalformed", name, err)
		}
	}
}

func TestAppendRejectsOversized(t *testing.T) {
	if _, err := Append(nil, &Msg{Type: User, Payload: make([]byte, MaxMessage)}); err == nil {
		t.Fatal("oversized payload encoded without error")
	}
	if _, err := Append(nil, &Msg{Type: Type(0)}); err == nil {
		t.Fatal("type 0 encoded without error")
	}
}

func TestConnID(t *testing.T) {
	id := ConnID(7, 12345)
	if ListenerOf(id) != 7 || id&(1<<40-1) != 12345 {
		t.Fatalf("ConnID(7, 12345) = %#x", id)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range roundTripCases() {
		b, _ := Append(nil, &m)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{byte(Ack), 0, 100})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes must encode back to the same bytes' meaning.
		b2, err := Append(nil, &m)
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		m2, err := Decode(b2)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if d := cmp.Diff(m, m2); d != "" {
			t.Fatalf("re-decode differs (-first +second):\n%s", d)
		}
	})
}
