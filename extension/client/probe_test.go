package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// Allow cannot report a probe's outcome, so it must never ask the one
// request that hands out probes (GET /circuits/{id}).
func TestAllowNeverTakesAProbe(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"circuits":[{"id":"svc","state":"HALF_OPEN","allowed":false,"version":4,"updatedAt":null,"stale":false,"ageMs":1}]}`))
	}))
	t.Cleanup(srv.Close)
	c := New(WithBaseURL(srv.URL), WithToken("tok"), WithTimeout(time.Second))
	allowed, err := c.Allow(context.Background(), "svc")
	if err != nil || allowed {
		t.Fatalf("Allow(HALF_OPEN) = %v, %v; want false", allowed, err)
	}
	if len(paths) != 1 || paths[0] != "GET /circuits" {
		t.Errorf("Allow asked %v, want only the batch lookup GET /circuits", paths)
	}
}

// The default timeout covers two miss timeouts (a miss, then a cool-down
// end and probe claim) when CIRCUIT_BREAKER_MISS_TIMEOUT is raised.
func TestTimeoutFollowsMissTimeout(t *testing.T) {
	tests := []struct {
		miss string
		want time.Duration
	}{
		{"", DefaultTimeout},
		{"100ms", DefaultTimeout},
		{"500ms", 1050 * time.Millisecond},
		{"not-a-duration", DefaultTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.miss, func(t *testing.T) {
			t.Setenv(api.EnvMissTimeout, tt.miss)
			if got := New().timeout; got != tt.want {
				t.Errorf("timeout with %s=%q: %s, want %s", api.EnvMissTimeout, tt.miss, got, tt.want)
			}
			if got := New(WithTimeout(time.Second)).timeout; got != time.Second {
				t.Errorf("WithTimeout(1s) gave %s", got)
			}
		})
	}
}
