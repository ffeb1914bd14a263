package main

import (
	"os"
	"testing"

	"github.com/sockshare/sockshare"
)

// The tests were written for master dispatch (the master's listening
// socket, its windows); TestHelloKernelDispatch names kernel dispatch. A
// run can still choose with SOCKSHARE_DISPATCH.
func TestMain(m *testing.M) {
	if os.Getenv(sockshare.DispatchEnvVar) == "" {
		os.Setenv(sockshare.DispatchEnvVar, sockshare.DispatchMaster)
	}
	os.Exit(m.Run())
}
