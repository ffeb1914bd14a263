//go:build !unix

package udp

import (
	"errors"
	"fmt"
	"runtime"
)

// Without descriptor passing there is no master to hold sockets for.
func dupCloexec(int) (int, error) {
	return -1, fmt.Errorf("%w on %s", errors.ErrUnsupported, runtime.GOOS)
}

func closeFD(int) error { return nil }
