//go:build unix && !linux

package passfd

// passCredOpt is unused off Linux: the test that needs it skips.
const passCredOpt = -1
