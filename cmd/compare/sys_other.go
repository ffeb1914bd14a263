//go:build !linux

package main

import (
	"errors"
	"syscall"
)

func pinSelf(int) error { return errors.ErrUnsupported }

// bindNoPort does nothing here: each bind reserves a port.
func bindNoPort(string, string, syscall.RawConn) error { return nil }
