package sockshare_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/sockshare/sockshare"
)

// roleEnv names the worker role a test binary plays when a test master
// re-runs it as a worker. Roles are registered by test files in init.
const roleEnv = "SOCKSHARE_TEST_ROLE"

// roles maps a role name to the function the re-run test binary executes
// instead of the tests; its result is the exit status.
var roles = map[string]func() int{}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		f, ok := roles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test role %q\n", role)
			os.Exit(3)
		}
		if !sockshare.IsWorker() && role != "master" && role != "grandchild" && role != "marker-check" && role != "dispatch-check" {
			fmt.Fprintf(os.Stderr, "role %q run outside a master\n", role)
			os.Exit(3)
		}
		os.Exit(f())
	}
	// The tests were written for master dispatch (windows, pending queues,
	// hand-backs) and name kernel dispatch where they test it; a run can
	// still choose with SOCKSHARE_DISPATCH.
	if os.Getenv(sockshare.DispatchEnvVar) == "" {
		os.Setenv(sockshare.DispatchEnvVar, sockshare.DispatchMaster)
	}
	os.Exit(m.Run())
}
