package policy_test

import (
	"fmt"
	"sort"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
)

// The construct writes a function's extension settings as environment
// variables with Env; the extension reads them back with
// ExtensionFromEnv, and both check them with the same ranges.
func ExampleExtension() {
	set := policy.Extension{RefreshInterval: 500 * time.Millisecond, DisableMaxAge: true, FailMode: policy.FailDeny}
	if err := set.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	env := set.Env()
	var names []string
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("%s=%s\n", k, env[k])
	}

	got, err := policy.ExtensionFromEnv(func(k string) string { return env[k] })
	fmt.Println(got == set, err)

	bad := policy.Extension{MaxAge: -time.Second}
	fmt.Println(bad.ValidateEnv())
	// Output:
	// CIRCUIT_BREAKER_FAIL_MODE=deny
	// CIRCUIT_BREAKER_MAX_AGE=0
	// CIRCUIT_BREAKER_REFRESH_INTERVAL=500ms
	// true <nil>
	// CIRCUIT_BREAKER_MAX_AGE -1s is negative: set CIRCUIT_BREAKER_MAX_AGE=0 to turn the maximum off
}
