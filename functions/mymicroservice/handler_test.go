package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
)

// fakeExtension answers every lookup with answer and records outcomes.
type fakeExtension struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []api.Outcome
}

func newFakeExtension(t *testing.T, answer string) *fakeExtension {
	t.Helper()
	f := &fakeExtension{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			var o api.Outcome
			_ = json.NewDecoder(r.Body).Decode(&o)
			f.mu.Lock()
			f.got = append(f.got, o)
			f.mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"accepted":1}`)
			return
		}
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeExtension) outcomes() []api.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Outcome(nil), f.got...)
}

const (
	closed  = `{"id":"mock-api","state":"CLOSED","allowed":true,"version":0}`
	missing = `{"id":"mock-api","state":"CLOSED","allowed":true,"version":0,"updatedAt":null,"ageMs":3}`
	opened  = `{"id":"mock-api","state":"OPEN","allowed":false,"version":1,"reason":"failure rate 62% over 30s (13 calls)"}`
)

func TestHandle(t *testing.T) {
	tests := []struct {
		name       string
		answer     string // extension's answer; "" = extension down
		downstream http.HandlerFunc
		timeout    time.Duration
		status     int
		contains   []string
		reported   int  // outcomes reported
		success    bool // of the reported outcome
		maxElapsed time.Duration
	}{
		{name: "allowed, service answers", answer: closed, downstream: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"data":"ok"}`)
		}, status: 200, contains: []string{`{"data":"ok"}`}, reported: 1, success: true},
		{name: "circuit item not written yet", answer: missing, downstream: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"data":"ok"}`)
		}, status: 200, contains: []string{`ok`}, reported: 1, success: true},
		{name: "open: fallback, no call", answer: opened, downstream: func(w http.ResponseWriter, _ *http.Request) {
			t.Error("downstream called while the circuit is open")
		}, status: 503, contains: []string{`"source":"fallback"`, `"circuit":"OPEN"`, `failure rate 62%`}},
		{name: "non-2xx passed on, counted as failure", answer: closed, downstream: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"error":"down"}`)
		}, status: 500, contains: []string{`{"error":"down"}`}, reported: 1, success: false},
		{name: "hanging service times out", answer: closed, timeout: 100 * time.Millisecond, downstream: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, status: 503, contains: []string{`"source":"fallback"`, `deadline exceeded`}, reported: 1, success: false, maxElapsed: 2 * time.Second},
		{name: "oversized answer is a failure", answer: closed, downstream: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, strings.Repeat("x", maxBody+1))
		}, status: 503, contains: []string{`larger than`}, reported: 1, success: false},
		{name: "extension down: fail mode allow calls", answer: "", downstream: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"data":"ok"}`)
		}, status: 200, contains: []string{`ok`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down := httptest.NewServer(tt.downstream)
			defer down.Close()
			base := "http://127.0.0.1:1"
			var ext *fakeExtension
			if tt.answer != "" {
				ext = newFakeExtension(t, tt.answer)
				base = ext.srv.URL
			}
			cfg := config{serviceID: "mock-api", apiURL: down.URL + "/api/resource", timeout: time.Second}
			if tt.timeout > 0 {
				cfg.timeout = tt.timeout
			}
			cb := client.New(client.WithBaseURL(base), client.WithToken("tok"), client.WithFailMode("allow"), client.WithTimeout(200*time.Millisecond))
			h := newHandler(cfg, cb, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			start := time.Now()
			resp, err := h.handle(context.Background(), events.APIGatewayProxyRequest{})
			if err != nil {
				t.Fatalf("handle returned error %v", err)
			}
			if tt.maxElapsed > 0 && time.Since(start) > tt.maxElapsed {
				t.Errorf("took %s, want at most %s", time.Since(start), tt.maxElapsed)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, resp.Body)
			}
			for _, c := range tt.contains {
				if !strings.Contains(resp.Body, c) {
					t.Errorf("body %s does not contain %s", resp.Body, c)
				}
			}
			if resp.Headers["Content-Type"] == "" {
				t.Error("no Content-Type")
			}
			if ext == nil {
				return
			}
			got := ext.outcomes()
			if len(got) != tt.reported {
				t.Fatalf("reported %d outcomes, want %d", len(got), tt.reported)
			}
			if tt.reported > 0 && *got[0].Success != tt.success {
				t.Errorf("reported success=%v, want %v", *got[0].Success, tt.success)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		timeout time.Duration
		wantErr string
	}{
		{"defaults", map[string]string{"SERVICE_ID": "a", "API_URL": "https://x.example/api"}, 3 * time.Second, ""},
		{"timeout", map[string]string{"SERVICE_ID": "a", "API_URL": "http://x", "DOWNSTREAM_TIMEOUT": "500ms"}, 500 * time.Millisecond, ""},
		{"missing id", map[string]string{"API_URL": "http://x"}, 0, "SERVICE_ID and API_URL"},
		{"relative url", map[string]string{"SERVICE_ID": "a", "API_URL": "/api"}, 0, "absolute"},
		{"timeout too long", map[string]string{"SERVICE_ID": "a", "API_URL": "http://x", "DOWNSTREAM_TIMEOUT": "1m"}, 0, "DOWNSTREAM_TIMEOUT"},
		{"timeout garbage", map[string]string{"SERVICE_ID": "a", "API_URL": "http://x", "DOWNSTREAM_TIMEOUT": "3"}, 0, "DOWNSTREAM_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.timeout != tt.timeout {
				t.Fatalf("config = %+v, %v", c, err)
			}
		})
	}
}
