//go:build !unix

package passfd

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUnsupported(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, recvErr := Recv(nil, nil, 1)
	_, parseErr := ParseRights(nil)
	_, _, pairErr := Socketpair()
	_, fileErr := FileConn(f)
	for name, err := range map[string]error{
		"Send":        Send(nil, nil, nil),
		"Recv":        recvErr,
		"ParseRights": parseErr,
		"Socketpair":  pairErr,
		"FileConn":    fileErr,
	} {
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("FileConn left its file open (Close: %v)", err)
	}
}
