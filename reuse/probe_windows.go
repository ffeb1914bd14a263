package reuse

// Probe reports that Windows cannot share an address safely: it has only
// SO_REUSEADDR, which this package refuses to use.
func Probe() Capabilities {
	return Capabilities{
		Note: "windows: only SO_REUSEADDR exists, which lets any process take the port; sharing an address is refused",
	}
}
