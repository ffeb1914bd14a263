//go:build unix && !solaris && !linux

package reuse

// platformControls are the options set on every socket, in order; an option
// of our own goes in this list.
func platformControls() []controlFunc {
	return []controlFunc{setReusePort}
}
