package policy_test

import (
	"fmt"

	"github.com/sockshare/sockshare/policy"
)

func ExampleParse() {
	p, err := policy.Parse("round-robin")
	fmt.Println(p, err)
	_, err = policy.Parse("random")
	fmt.Println(err)
	// Output:
	// rr <nil>
	// unknown policy "random" (valid: shared, rr, leastconn, reuseport, sticky)
}
