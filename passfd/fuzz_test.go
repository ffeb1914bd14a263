//go:build unix

package passfd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// maxFuzzOOB bounds the inputs FuzzParseRights explores: 16 empty control
// messages, or one of 60 fds. The parser's paths do not depend on how many
// fds or messages there are, only on the lengths, levels and types it meets,
// and those fit. A longer input costs the fuzzer much more than it can show:
// when one finds new coverage (a loop counter in a higher hit bucket is
// enough), Go minimizes it before fuzzing on, with O(n²) executions that it
// does not report; an input of 1 KiB, such as a message of 253 fds, took
// 17 s a time, and the run showed 0 execs/s. TestParseRights covers
// SCM_MAX_FD fds in one message.
const maxFuzzOOB = 256

func FuzzParseRights(f *testing.F) {
	rights := unix.UnixRights(3, 4, 5)
	f.Add(rights)
	f.Add([]byte{})
	f.Add(rights[:5]) // a truncated header
	f.Add(append(unix.UnixRights(6), unix.UnixRights(7, 8)...))
	f.Add(unix.UnixRights(9)[:unix.CmsgLen(4)]) // last message unpadded
	f.Add(append(unix.UnixRights(10), rights[:unix.CmsgLen(4)+2]...))
	notRights := unix.UnixRights(11, 12)
	notRights[unix.SizeofCmsghdr-1]++ // the type field's high byte on little endian, low on big
	f.Add(notRights)

	f.Fuzz(func(t *testing.T, oob []byte) {
		if len(oob) > maxFuzzOOB {
			return
		}
		var closed []int
		fds, err := parseRights(oob, func(fd int) { closed = append(closed, fd) })
		found, ok := referenceRights(t, oob)
		if ok {
			if err != nil {
				t.Fatalf("parseRights(%x) = %v, want fds %v", oob, err, found)
			}
			if len(closed) > 0 {
				t.Fatalf("parseRights(%x) succeeded but closed %v", oob, closed)
			}
			if !slices.Equal(fds, found) {
				t.Fatalf("parseRights(%x) = %v, want %v", oob, fds, found)
			}
			return
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseRights(%x) = %v, %v; want ErrMalformed", oob, fds, err)
		}
		if fds != nil {
			t.Fatalf("parseRights(%x) returned fds %v with an error", oob, fds)
		}
		if !slices.Equal(closed, found) {
			t.Fatalf("parseRights(%x) closed %v, want every fd found: %v", oob, closed, found)
		}
	})
}

// referenceRights is a second, deliberately plain reading of the format, for
// the fuzz target to compare against: the headers are decoded with
// encoding/binary into unix.Cmsghdr itself rather than by offsets. It
// returns every non-negative fd in an SCM_RIGHTS message it could delimit,
// and whether oob is a clean sequence of SCM_RIGHTS messages.
func referenceRights(t *testing.T, oob []byte) (found []int, ok bool) {
	ok = true
	for off := 0; off < len(oob); {
		if len(oob)-off < unix.SizeofCmsghdr {
			return found, false
		}
		var h unix.Cmsghdr
		if err := binary.Read(bytes.NewReader(oob[off:off+unix.SizeofCmsghdr]), binary.NativeEndian, &h); err != nil {
			t.Fatalf("decoding a cmsghdr: %v", err)
		}
		if uint64(h.Len) < uint64(unix.CmsgLen(0)) || uint64(h.Len) > uint64(len(oob)-off) {
			return found, false
		}
		data := oob[off+unix.CmsgLen(0) : off+int(h.Len)]
		if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_RIGHTS {
			ok = false
		} else {
			if len(data)%4 != 0 {
				ok = false
			}
			for len(data) >= 4 {
				if fd := int32(binary.NativeEndian.Uint32(data)); fd >= 0 {
					found = append(found, int(fd))
				} else {
					ok = false
				}
				data = data[4:]
			}
		}
		off += min(unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0)), len(oob)-off)
	}
	return found, ok
}

func TestParseRights(t *testing.T) {
	hdr := unix.CmsgLen(0)
	withLen := func(b []byte, n int) []byte {
		b = slices.Clone(b)
		putCmsgLen(b, n)
		return b
	}
	twoThree := unix.UnixRights(2, 3)
	most := make([]int, MaxFDsPerMessage) // longer than FuzzParseRights explores
	for i := range most {
		most[i] = i + 3
	}
	for _, tc := range []struct {
		name   string
		oob    []byte
		fds    []int
		closed []int
	}{
		{"empty", nil, nil, nil},
		{"one message", unix.UnixRights(3, 4, 5), []int{3, 4, 5}, nil},
		{"SCM_MAX_FD fds", unix.UnixRights(most...), most, nil},
		{"SCM_MAX_FD fds, then a stray byte", append(unix.UnixRights(most...), 0xff), nil, most},
		{"two messages", append(unix.UnixRights(1), twoThree...), []int{1, 2, 3}, nil},
		{"last message unpadded", unix.UnixRights(7)[:unix.CmsgLen(4)], []int{7}, nil},
		{"truncated header", unix.UnixRights(3)[:5], nil, nil},
		{"truncated header after a message", append(unix.UnixRights(1), twoThree[:5]...), nil, []int{1}},
		{"length beyond the buffer", withLen(unix.UnixRights(4), unix.CmsgSpace(4)+1), nil, nil},
		{"length shorter than a header", withLen(unix.UnixRights(4), hdr-1), nil, nil},
		{"partial fd", withLen(unix.UnixRights(5, 6), unix.CmsgLen(6)), nil, []int{5}},
		{"negative fd", unix.UnixRights(5, -1, 6), nil, []int{5, 6}},
		{"not SCM_RIGHTS", append(unixCredentialsLike(), twoThree...), nil, []int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var closed []int
			fds, err := parseRights(tc.oob, func(fd int) { closed = append(closed, fd) })
			wantErr := tc.fds == nil && (tc.closed != nil || len(tc.oob) > 0)
			if wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("parseRights: %v, %v; want error: %v", fds, err, wantErr)
			}
			if !slices.Equal(fds, tc.fds) {
				t.Errorf("fds %v, want %v", fds, tc.fds)
			}
			if !slices.Equal(closed, tc.closed) {
				t.Errorf("closed %v, want %v", closed, tc.closed)
			}
		})
	}
}

// unixCredentialsLike returns a well-formed control message that is not
// SCM_RIGHTS.
func unixCredentialsLike() []byte {
	b := make([]byte, unix.CmsgSpace(12))
	putCmsgLen(b, unix.CmsgLen(12))
	binary.NativeEndian.PutUint32(b[cmsgLenSize:], uint32(int32(unix.SOL_SOCKET)))
	binary.NativeEndian.PutUint32(b[cmsgLenSize+4:], uint32(int32(unix.SCM_RIGHTS)+1))
	return b
}

// TestParseRightsClosesRealFDs runs the exported ParseRights on fds this
// test owns: on error they must really be closed.
func TestParseRightsClosesRealFDs(t *testing.T) {
	checkNoLeak(t)
	_, w := pipes(t, 1)
	a, err := unix.Dup(w[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Dup(w[0])
	if err != nil {
		unix.Close(a)
		t.Fatal(err)
	}
	oob := append(unix.UnixRights(a, b), 0xff) // a trailing stray byte
	fds, err := ParseRights(oob)
	if !errors.Is(err, ErrMalformed) || fds != nil {
		CloseAll([]int{a, b})
		t.Fatalf("ParseRights: %v, %v; want ErrMalformed", fds, err)
	}
	if isOpen(a) || isOpen(b) {
		t.Errorf("ParseRights left fds open after an error: %d %v, %d %v", a, isOpen(a), b, isOpen(b))
	}

	fds, err = ParseRights(unix.UnixRights(w[0]))
	if err != nil || !slices.Equal(fds, w) {
		t.Errorf("ParseRights of a valid message: %v, %v", fds, err)
	}
	if !isOpen(w[0]) {
		t.Error("ParseRights closed an fd on success")
	}
}

func TestCmsgLayout(t *testing.T) {
	if cmsgLenSize != 4 && cmsgLenSize != 8 {
		t.Fatalf("cmsghdr length field of %d bytes", cmsgLenSize)
	}
	// Our encoder and x/sys's agree.
	fds := []int{3, 1 << 20, 42}
	if got, want := putRights(make([]byte, maxOOB), fds), unix.UnixRights(fds...); !bytes.Equal(got, want) {
		t.Errorf("putRights = %x, unix.UnixRights = %x", got, want)
	}
}
