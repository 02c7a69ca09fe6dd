package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/inflight"
)

// Server is the local API's HTTP server. Unlike a bare http.Server, its
// Shutdown refuses the requests that still arrive on open connections
// (503) and returns only once no handler runs, so that nothing a handler
// does can come after the SHUTDOWN flush.
type Server struct {
	*http.Server

	handlers inflight.Counter // handlers running; closed at Shutdown or Close
}

// track wraps h: a request is refused once the server is shutting down,
// and counted while its handler runs.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.handlers.Enter() {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, "the extension is shutting down")
			return
		}
		defer s.handlers.Leave()
		h.ServeHTTP(w, r)
	})
}

// Shutdown stops accepting connections, refuses every request that
// arrives from now on, closes idle connections and waits until every
// handler in flight has returned, or ctx ends. Call Close after a failed
// Shutdown to cancel the requests still running, then Wait for their
// handlers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.handlers.Close()
	err := s.Server.Shutdown(ctx)
	if werr := s.Wait(ctx); werr != nil && err == nil {
		err = werr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close closes the listeners and every connection at once; requests still
// running see their context cancelled. It does not wait for their
// handlers: see Wait.
func (s *Server) Close() error {
	s.handlers.Close()
	return s.Server.Close()
}

// Wait returns once no handler runs, or with ctx's error when ctx ends
// first.
func (s *Server) Wait(ctx context.Context) error {
	return s.handlers.Wait(ctx)
}
