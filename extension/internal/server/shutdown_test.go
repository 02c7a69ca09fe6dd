package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts s on a loopback port and returns its base URL.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return "http://" + ln.Addr().String()
}

// Shutdown returns only once the handler in flight has returned, and
// refuses requests that arrive meanwhile.
func TestShutdownWaitsForHandlers(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	s := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		finished.Store(true)
		w.WriteHeader(http.StatusNoContent)
	}), nil)
	url := serve(t, s)
	answered := make(chan int, 1)
	go func() {
		res, err := http.Get(url + "/x")
		if err != nil {
			answered <- 0
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	<-entered

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	// The handler runs on: Shutdown must still be waiting.
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a handler was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	// A request that still reaches the handler now is refused.
	rec := httptest.NewRecorder()
	s.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("request during shutdown answered %d, want 503", rec.Code)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if !finished.Load() {
		t.Error("Shutdown returned before the handler did")
	}
	if code := <-answered; code != http.StatusNoContent {
		t.Errorf("the request in flight was answered %d, want 204", code)
	}
}

// A handler that outlives the grace has its request cancelled by Close,
// and Wait returns once it has returned.
func TestCloseCancelsAndWaitWaits(t *testing.T) {
	entered := make(chan struct{})
	var finished atomic.Bool
	s := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		time.Sleep(20 * time.Millisecond)
		finished.Store(true)
	}), nil)
	url := serve(t, s)
	go func() {
		if res, err := http.Get(url + "/x"); err == nil {
			res.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil while the handler was blocked")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer wcancel()
	if err := s.Wait(wctx); err != nil || !finished.Load() {
		t.Errorf("Wait = %v, handler finished %v; want it to return after the handler", err, finished.Load())
	}
}
