//go:build !unix

package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
)

func runCommand(_ []string, _, stderr io.Writer) int {
	fmt.Fprintf(stderr, "sockshare: run: %v: a master needs unix descriptor passing, which %s lacks\n", errors.ErrUnsupported, runtime.GOOS)
	return 1
}

func execShim(stderr io.Writer) int {
	fmt.Fprintln(stderr, "sockshare: exec shim:", errors.ErrUnsupported)
	return 127
}
