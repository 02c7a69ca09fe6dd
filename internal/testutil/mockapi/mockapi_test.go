package mockapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, ctx context.Context, url string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestModes(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s)
	defer srv.Close()

	tests := []struct {
		mode       Mode
		path       string
		wantStatus int
		wantBody   string
		minLatency time.Duration
	}{
		{Healthy, ResourcePath, 200, "Hello from the mock service", 0},
		{Healthy, HealthPath, 200, `"healthy"`, 0},
		{Failing, ResourcePath, 503, "failing", 0},
		{Failing, HealthPath, 503, "failing", 0},
		{Slow, HealthPath, 200, `"healthy"`, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+tt.path, func(t *testing.T) {
			if err := s.SetMode(tt.mode, 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			status, body, err := get(t, context.Background(), srv.URL+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %d %s, want %d containing %q", tt.path, status, body, tt.wantStatus, tt.wantBody)
			}
			if d := time.Since(start); d < tt.minLatency {
				t.Errorf("answered after %s, want at least %s", d, tt.minLatency)
			}
		})
	}
}

func TestHangHoldsUntilClientGivesUp(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s)
	defer srv.Close()
	if err := s.SetMode(Hang, 0); err != nil {
		t.Fatal(err)
	}
	// The clock starts before the deadline is set, so the request cannot
	// seem to end before it.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := get(t, ctx, srv.URL+ResourcePath)
	if err == nil {
		t.Fatal("hanging request answered")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("request ended after %s, want about 100ms", d)
	}
}

func TestHangReleasedByModeChange(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s)
	defer srv.Close()
	if err := s.SetMode(Hang, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		status, _, _ := get(t, context.Background(), srv.URL+HealthPath)
		done <- status
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Requests() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.SetMode(Healthy, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case status := <-done:
		if status != http.StatusGatewayTimeout {
			t.Errorf("released request: %d, want 504", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hanging request not released by the mode change")
	}
}

func TestControlEndpoint(t *testing.T) {
	s := New()
	var changes []Mode
	s.OnModeChange = func(m Mode, _ time.Duration) { changes = append(changes, m) }
	srv := httptest.NewServer(s)
	defer srv.Close()

	tests := []struct {
		name, query, body string
		wantStatus        int
		wantMode          Mode
	}{
		{"failing", "", "failing\n", 200, Failing},
		{"upper case", "", "HEALTHY", 200, Healthy},
		{"slow with delay", "?delay=2s", "slow", 200, Slow},
		{"mode in query", "?mode=hang", "", 200, Hang},
		{"unknown", "", "broken", 400, Hang},
		{"bad delay", "?delay=-1s", "slow", 400, Hang},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+ModePath+tt.query, "text/plain", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if m, _ := s.Mode(); m != tt.wantMode {
				t.Errorf("mode %s, want %s", m, tt.wantMode)
			}
		})
	}
	if _, d := s.Mode(); d != 2*time.Second {
		t.Errorf("delay %s, want 2s", d)
	}
	if len(changes) != 4 {
		t.Errorf("OnModeChange called %d times, want 4: %v", len(changes), changes)
	}
	status, body, err := get(t, context.Background(), srv.URL+ControlPath)
	if err != nil || status != 200 || !strings.Contains(body, `"mode":"hang"`) {
		t.Errorf("GET /control = %d %s %v", status, body, err)
	}
}
