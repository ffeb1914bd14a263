package reuse

// Windows has only SO_REUSEADDR, which this package refuses to use.
var thisOS = groupFacts{
	refused: "only SO_REUSEADDR exists, which lets any process take the port; sharing an address is refused",
}
