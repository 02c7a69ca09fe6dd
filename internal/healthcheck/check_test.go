package healthcheck

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hang blocks until the client gives up.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func TestCheck(t *testing.T) {
	var gotUA atomic.Value
	var bodyWritten atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		gotUA.Store(r.Header.Get("User-Agent"))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	mux.HandleFunc("/hang", hang)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		fmt.Fprint(w, "late")
	})
	mux.HandleFunc("/hang-body", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1024)
		for i := 0; i < 64*1024; i++ { // 64 MiB unless the client stops reading
			n, err := fmt.Fprint(w, chunk)
			bodyWritten.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/redirect/", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/redirect/"), "%d", &n)
		if n == 0 {
			fmt.Fprint(w, "arrived")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d", n-1), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String() + "/health"
	l.Close()

	c := NewChecker(nil, AllowLocalTargets())
	fast := Probe{Timeout: 2 * time.Second, SlowCallThreshold: time.Second}
	tests := []struct {
		name    string
		url     string
		probe   Probe
		checker *Checker
		want    Outcome
		status  int
		detail  string
		reason  string // Reason(), when it differs from Detail
	}{
		{name: "healthy", url: srv.URL + "/ok", probe: fast, want: OK, status: 200},
		{name: "500", url: srv.URL + "/500", probe: fast, want: Status, status: 500, detail: "status 500 not in 200-299"},
		{name: "304 not expected by default", url: srv.URL + "/304", probe: fast, want: Status, status: 304},
		{name: "304 expected", url: srv.URL + "/304", probe: Probe{Timeout: time.Second, ExpectedStatus: MustParseStatusSet("200-299,304")}, want: OK, status: 304},
		{name: "500 expected", url: srv.URL + "/500", probe: Probe{Timeout: time.Second, ExpectedStatus: MustParseStatusSet("500")}, want: OK, status: 500},
		{name: "hang beyond timeout", url: srv.URL + "/hang", probe: Probe{Timeout: 100 * time.Millisecond}, want: Timeout, detail: "timeout after 100ms"},
		{name: "hang in body", url: srv.URL + "/hang-body", probe: Probe{Timeout: 100 * time.Millisecond}, want: Timeout, status: 200},
		{name: "slow", url: srv.URL + "/slow", probe: Probe{Timeout: time.Second, SlowCallThreshold: 50 * time.Millisecond}, want: Slow, status: 200, detail: "slow call"},
		{name: "slow but under threshold", url: srv.URL + "/slow", probe: Probe{Timeout: time.Second, SlowCallThreshold: 900 * time.Millisecond}, want: OK, status: 200},
		{name: "connection refused", url: refused, probe: fast, want: Connection, detail: "refused", reason: "connection error"},
		{name: "unknown host", url: "http://does-not-exist.invalid/health", probe: fast, want: Connection, reason: "connection error"},
		{name: "untrusted certificate", url: tlsSrv.URL + "/ok", probe: fast, want: TLS, detail: "certificate", reason: "TLS error"},
		{name: "trusted certificate", url: tlsSrv.URL + "/ok", probe: fast, checker: NewChecker(tlsSrv.Client().Transport), want: OK, status: 200},
		{name: "plain http to a TLS port", url: "https://" + srv.Listener.Addr().String() + "/ok", probe: fast, want: TLS, reason: "TLS error"},
		{name: "three redirects followed", url: srv.URL + "/redirect/3", probe: fast, want: OK, status: 200},
		{name: "four redirects refused", url: srv.URL + "/redirect/4", probe: fast, want: Redirects, status: 0, detail: "more than 3 redirects"},
		{name: "big body read only in part", url: srv.URL + "/big", probe: fast, want: OK, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := c
			if tt.checker != nil {
				ch = tt.checker
			}
			p := tt.probe
			p.URL = tt.url
			start := time.Now()
			r := ch.Check(context.Background(), p)
			if r.Outcome != tt.want || r.OK() != (tt.want == OK) {
				t.Fatalf("Outcome = %s (%s), want %s", r.Outcome, r.Detail, tt.want)
			}
			if tt.status != 0 && r.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", r.StatusCode, tt.status)
			}
			if !strings.Contains(r.Detail, tt.detail) || r.Detail == "" {
				t.Errorf("Detail = %q, want it to contain %q", r.Detail, tt.detail)
			}
			if want := cmp.Or(tt.reason, r.Detail); r.Reason() != want {
				t.Errorf("Reason() = %q, want %q", r.Reason(), want)
			}
			// A margin for a loaded machine under -race, still well under
			// DefaultTimeout, so a probe's own timeout ignored in favour of
			// the default would be caught.
			if limit := p.WithDefaults().Timeout + 2*time.Second; time.Since(start) > limit {
				t.Errorf("check took %s, beyond its timeout", time.Since(start))
			}
			if r.Latency <= 0 && tt.want != Redirects {
				t.Errorf("Latency = %s, want > 0", r.Latency)
			}
		})
	}
	if ua, _ := gotUA.Load().(string); ua != UserAgent {
		t.Errorf("User-Agent = %q, want %q", ua, UserAgent)
	}
	// The client stopped after MaxBodyBytes: the server could not push the
	// whole 64 MiB (socket buffers hold a few MiB at most).
	if n := bodyWritten.Load(); n >= 64<<20 {
		t.Errorf("server wrote %d bytes: the whole body was read", n)
	}
}

func TestCheckKeepsNoConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewChecker(nil, AllowLocalTargets())
	for i := 0; i < 3; i++ {
		if r := c.Check(context.Background(), Probe{URL: srv.URL}); !r.OK() {
			t.Fatalf("check %d: %s", i, r.Detail)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 checks, want a fresh one each", n)
	}
}

func TestParseStatusSet(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		in200   bool
		in304   bool
		wantErr string
	}{
		{in: "200-299", want: "200-299", in200: true},
		{in: "200-299,304", want: "200-299,304", in200: true, in304: true},
		{in: " 204 , 304 ", want: "204,304", in304: true},
		{in: "500", want: "500"},
		{in: "100-599", want: "100-599", in200: true, in304: true},
		{in: "", wantErr: "empty"},
		{in: "2xx", wantErr: "100..599"},
		{in: "299-200", wantErr: "backwards"},
		{in: "099", wantErr: "100..599"},
		{in: "600", wantErr: "100..599"},
		{in: "200,", wantErr: "three-digit"},
		{in: "200-", wantErr: "three-digit"},
		{in: "-200", wantErr: "three-digit"},
		{in: "200-250-299", wantErr: "three-digit"},
		{in: "+20", wantErr: "100..599"},
		{in: strings.Repeat("200,", 32) + "200", wantErr: "more than 32"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseStatusSet(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseStatusSet = %v, %v; want error containing %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tt.want || s.Contains(200) != tt.in200 || s.Contains(304) != tt.in304 {
				t.Errorf("%q: String %q Contains(200) %v Contains(304) %v", tt.in, s.String(), s.Contains(200), s.Contains(304))
			}
		})
	}
	var zero StatusSet
	if !zero.Contains(204) || zero.Contains(301) || zero.String() != "200-299" {
		t.Error("zero StatusSet is not 200-299")
	}
}

func TestProbeValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Probe
		wantErr string
	}{
		{"defaults", Probe{URL: "https://x/api/resource/health"}, ""},
		{"http with port", Probe{URL: "http://127.0.0.1:8080/h?x=1"}, ""},
		{"short timeout takes it as slow threshold", Probe{URL: "http://x", Timeout: time.Second}, ""},
		{"empty URL", Probe{}, "URL is empty"},
		{"relative", Probe{URL: "/health"}, "scheme"},
		{"ftp", Probe{URL: "ftp://x/health"}, "scheme \"ftp\""},
		{"no host", Probe{URL: "http:///health"}, "no host"},
		{"malformed", Probe{URL: "http://[::1"}, "malformed"},
		{"credentials", Probe{URL: "https://u:secret@x/h"}, "credentials"},
		{"long", Probe{URL: "https://x/" + strings.Repeat("a", MaxURLLength)}, "longer than"},
		{"timeout too long", Probe{URL: "http://x", Timeout: 31 * time.Second}, "Timeout 31s"},
		{"timeout negative", Probe{URL: "http://x", Timeout: -time.Second}, "Timeout -1s"},
		{"slow above timeout", Probe{URL: "http://x", Timeout: time.Second, SlowCallThreshold: 2 * time.Second}, "SlowCallThreshold 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.WithDefaults().Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if p := (Probe{URL: "http://x", Timeout: time.Second}).WithDefaults(); p.SlowCallThreshold != time.Second {
		t.Errorf("slow threshold default with 1s timeout = %s, want 1s", p.SlowCallThreshold)
	}
	if p := (Probe{URL: "http://x"}).WithDefaults(); p.Timeout != 4*time.Second || p.SlowCallThreshold != 3*time.Second || p.ExpectedStatus.String() != "200-299" {
		t.Errorf("defaults = %+v", p)
	}
}
