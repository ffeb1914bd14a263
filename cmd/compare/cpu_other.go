//go:build !unix

package main

import "time"

// selfCPU is unknown here; the master cannot run on these systems anyway
// (sockshare.NewMaster returns ErrUnsupported).
func selfCPU() time.Duration { return 0 }
