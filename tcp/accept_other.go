//go:build !unix

package tcp

import "errors"

// accept is unavailable without unix sockets: nothing here accepts.
func accept(int) (int, error) { return -1, errors.ErrUnsupported }
