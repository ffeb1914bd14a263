//go:build !unix

package fdproto

import "net"

// canInspect is false: there are no inheritable descriptors to inspect.
const canInspect = false

func isOpen(int) bool { return false }

func setCloexec(int) {}

func describe(int) (string, net.Addr) { return "", nil }
