//go:build !unix

package sockfd

import (
	"errors"
	"fmt"
	"runtime"
)

// DupCloexec is unsupported here: there is no master to hold sockets for.
func DupCloexec(int) (int, error) {
	return -1, fmt.Errorf("%w on %s", errors.ErrUnsupported, runtime.GOOS)
}

func closeFD(int) error { return nil }
