package client

import (
	"context"
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// fakeExtension answers like the extension: "down" is OPEN, anything else
// CLOSED; it checks the token.
func fakeExtension(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done(): // the client gave up
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get(api.HeaderToken) != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"missing or wrong X-Circuit-Breaker-Token header"}`))
			return
		}
		answer := func(id string) string {
			if id == "down" {
				return `{"id":"down","state":"OPEN","allowed":false,"version":2,"updatedAt":null,"stale":false,"ageMs":3}`
			}
			return `{"id":"` + id + `","state":"CLOSED","allowed":true,"version":1,"updatedAt":null,"stale":false,"ageMs":3}`
		}
		if r.URL.Path == "/circuits" {
			var list []string
			for _, id := range strings.Split(r.URL.Query().Get("ids"), ",") {
				list = append(list, answer(id))
			}
			_, _ = w.Write([]byte(`{"circuits":[` + strings.Join(list, ",") + `]}`))
			return
		}
		_, _ = w.Write([]byte(answer(strings.TrimPrefix(r.URL.Path, "/circuits/"))))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStateAndAllow(t *testing.T) {
	srv := fakeExtension(t, 0)
	c := New(WithBaseURL(srv.URL), WithToken("tok"), WithTimeout(time.Second))
	ctx := context.Background()
	st, err := c.State(ctx, "down")
	if err != nil || st.State != "OPEN" || st.Allowed || st.Version != 2 {
		t.Fatalf("State = %+v, %v", st, err)
	}
	tests := []struct {
		id   string
		want bool
	}{{"down", false}, {"up", true}}
	for _, tt := range tests {
		if got, err := c.Allow(ctx, tt.id); err != nil || got != tt.want {
			t.Errorf("Allow(%s) = %v, %v; want %v", tt.id, got, err, tt.want)
		}
	}
	many, err := c.States(ctx, "a", "down")
	if err != nil || len(many) != 2 || many[1].Allowed {
		t.Errorf("States = %+v, %v", many, err)
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("Health = %v", err)
	}
}

func TestErrorAnswer(t *testing.T) {
	srv := fakeExtension(t, 0)
	c := New(WithBaseURL(srv.URL), WithToken("wrong"), WithTimeout(time.Second), WithFailMode("deny"))
	allowed, err := c.Allow(context.Background(), "up")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 401 || e.Message == "" {
		t.Fatalf("err = %v, want *Error 401", err)
	}
	if allowed {
		t.Error("allowed with fail mode deny")
	}
}

func TestUnreachableFollowsFailMode(t *testing.T) {
	slow := fakeExtension(t, 10*time.Second) // far past the 20 ms timeout, even on a loaded machine
	tests := []struct {
		name    string
		base    string
		mode    string
		allowed bool
	}{
		{"down allow", "http://127.0.0.1:1", "allow", true},
		{"down deny", "http://127.0.0.1:1", "deny", false},
		{"timeout allow", slow.URL, "", true},
		{"timeout deny", slow.URL, "deny", false},
		{"invalid mode denies", "http://127.0.0.1:1", "sometimes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(WithBaseURL(tt.base), WithToken("tok"), WithTimeout(20*time.Millisecond), WithFailMode(tt.mode))
			start := time.Now()
			allowed, err := c.Allow(context.Background(), "up")
			if err == nil {
				t.Fatal("no error from an unreachable extension")
			}
			if allowed != tt.allowed {
				t.Errorf("allowed = %v, want %v", allowed, tt.allowed)
			}
			if d := time.Since(start); d > 150*time.Millisecond {
				t.Errorf("took %s, past the timeout", d)
			}
		})
	}
}

func TestFailModeFromEnvironment(t *testing.T) {
	t.Setenv("CIRCUIT_BREAKER_FAIL_MODE", "deny")
	t.Setenv("CIRCUIT_BREAKER_PORT", "1")
	c := New(WithTimeout(20 * time.Millisecond))
	if allowed, err := c.Allow(context.Background(), "x"); err == nil || allowed {
		t.Fatalf("Allow = %v, %v; want denied by the environment's fail mode", allowed, err)
	}
}

func TestDo(t *testing.T) {
	srv := fakeExtension(t, 0)
	c := New(WithBaseURL(srv.URL), WithToken("tok"), WithTimeout(time.Second))
	ctx := context.Background()
	boom := errors.New("boom")
	tests := []struct {
		name         string
		id           string
		callErr      error
		fallback     bool
		wantCalled   bool
		wantFallback error
		wantErr      error
	}{
		{"closed runs call", "up", nil, true, true, nil, nil},
		{"open runs fallback", "down", nil, true, false, ErrOpen, nil},
		{"failed call runs fallback", "up", boom, true, true, boom, nil},
		{"open without fallback", "down", nil, false, false, nil, ErrOpen},
		{"failed call without fallback", "up", boom, false, true, nil, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			var fbErr error
			var fb func(context.Context, error) error
			if tt.fallback {
				fb = func(_ context.Context, err error) error { fbErr = err; return nil }
			}
			err := c.Do(ctx, tt.id, func(context.Context) error { called = true; return tt.callErr }, fb)
			if called != tt.wantCalled || !errors.Is(fbErr, tt.wantFallback) || !errors.Is(err, tt.wantErr) {
				t.Errorf("called=%v fallback=%v err=%v", called, fbErr, err)
			}
		})
	}
}

// The client finds the token as the extension does (api.Token): in a
// SnapStart restore there is no AWS_SESSION_TOKEN, only the container
// credentials' token.
func TestTokenFromEnvironment(t *testing.T) {
	tests := []struct {
		name, session, container string
		allowed                  bool
	}{
		{"session token", "tok", "other", true},
		{"SnapStart: container token only", "", "tok", true},
		{"wrong session token wins over the container's", "wrong", "tok", false},
	}
	srv := fakeExtension(t, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(api.EnvSessionToken, tt.session)
			t.Setenv(api.EnvContainerAuthToken, tt.container)
			c := New(WithBaseURL(srv.URL), WithTimeout(time.Second), WithFailMode("deny"))
			allowed, err := c.Allow(context.Background(), "up")
			if allowed != tt.allowed || (err == nil) != tt.allowed {
				t.Errorf("Allow = %v, %v; want %v", allowed, err, tt.allowed)
			}
		})
	}
}

// The public client depends on the extension's wire format (package api)
// only, never on the extension's internal packages.
func TestImportsNoInternalPackage(t *testing.T) {
	for _, dir := range []string{".", "../api"} {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkgs {
			for name, f := range p.Files {
				for _, imp := range f.Imports {
					if path := strings.Trim(imp.Path.Value, `"`); strings.Contains(path, "/internal/") {
						t.Errorf("%s imports %s", name, path)
					}
				}
			}
		}
	}
}
