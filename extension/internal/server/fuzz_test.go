package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// FuzzServer feeds raw HTTP/1.1 requests to the handler and checks the
// invariants: no panic, a known status, a JSON body, a JSON error message
// on failures, no answer without the token except /health, no 200 for a
// forwarded request, and only valid IDs in answers.
func FuzzServer(f *testing.F) {
	seeds := []string{
		"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /circuits/mock-api HTTP/1.1\r\nHost: x\r\nX-Circuit-Breaker-Token: session-token\r\n\r\n",
		"GET /circuits?ids=a,b HTTP/1.1\r\nHost: x\r\nX-Circuit-Breaker-Token: session-token\r\n\r\n",
		"GET /circuits/a%2Fb HTTP/1.1\r\nHost: x\r\nX-Circuit-Breaker-Token: session-token\r\n\r\n",
		"POST /circuits/x HTTP/1.1\r\nHost: x\r\nX-Circuit-Breaker-Token: session-token\r\nContent-Length: 3\r\n\r\nabc",
		"GET /circuits/x HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nX-Circuit-Breaker-Token: session-token\r\n\r\n",
		"GET /circuits/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Circuit-Breaker-Token: session-token\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /../health HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	h, _ := newTestHandler(token)
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(raw))))
		if err != nil {
			return // not HTTP: net/http rejects it before our handler
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 301, 307, 308, 400, 401, 403, 404, 405, 413:
		default:
			t.Fatalf("unexpected status %d for %q", rec.Code, raw)
		}
		if rec.Code >= 300 && rec.Code < 400 {
			return // ServeMux path cleaning redirect
		}
		_, forwarded := req.Header["X-Forwarded-For"]
		if forwarded && rec.Code != http.StatusForbidden {
			t.Fatalf("forwarded request got %d", rec.Code)
		}
		if rec.Code == 200 && req.URL.Path != "/health" && req.Header.Get(api.HeaderToken) != token {
			t.Fatalf("answered without the token: %q", raw)
		}
		if req.Method == http.MethodHead {
			return
		}
		if rec.Code >= 400 {
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("error body %q is not JSON with a message", rec.Body)
			}
			return
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("invalid JSON %q", rec.Body)
		}
		var one api.Circuit
		var many api.Circuits
		_ = json.Unmarshal(rec.Body.Bytes(), &one)
		_ = json.Unmarshal(rec.Body.Bytes(), &many)
		for _, c := range append(many.Circuits, one) {
			if c.ID != "" && circuit.ValidateID(c.ID) != nil {
				t.Fatalf("answered for invalid ID %q", c.ID)
			}
		}
	})
}
