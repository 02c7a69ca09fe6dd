package api_test

import (
	"fmt"
	"net/http"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// A caller in any Go code builds its requests to the extension with the
// token by the same rule the extension checks it. In a function,
// os.Getenv is the getenv; a SnapStart restore has no session token, so
// the container's authorization token is taken.
func ExampleToken() {
	snapStart := map[string]string{api.EnvContainerAuthToken: "container-token"}
	token := api.Token(func(k string) string { return snapStart[k] })

	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/circuits/payments", api.DefaultPort), nil)
	req.Header.Set(api.HeaderToken, token)
	fmt.Println(req.Header.Get(api.HeaderToken))
	// Output: container-token
}
