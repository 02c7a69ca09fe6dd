package healthcheck

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAddressClass(t *testing.T) {
	tests := []struct {
		addr, want string
	}{
		{"127.0.0.1", classLoopback},
		{"127.8.9.10", classLoopback},
		{"::1", classLoopback},
		{"::ffff:127.0.0.1", classLoopback},
		{"169.254.169.254", classMetadata},
		{"169.254.170.2", classMetadata},
		{"fd00:ec2::254", classMetadata},
		{"fd00:ec2::23", classMetadata},
		{"::ffff:169.254.169.254", classMetadata},
		{"169.254.1.1", classLinkLocal},
		{"fe80::1", classLinkLocal},
		{"0.0.0.0", classUnspecified},
		{"0.1.2.3", classUnspecified},
		{"::", classUnspecified},
		{"10.0.0.5", ""},
		{"172.16.3.4", ""},
		{"192.168.1.1", ""},
		{"fd12:3456::1", ""},
		{"100.64.0.1", ""},
		{"8.8.8.8", ""},
		{"2001:db8::1", ""},
	}
	for _, tt := range tests {
		if got := addressClass(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("addressClass(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// counted is a local server that counts its requests.
type counted struct {
	*httptest.Server
	hits atomic.Int64
}

func newCounted(t *testing.T, h http.HandlerFunc) *counted {
	t.Helper()
	c := &counted{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counted) addrPort(t *testing.T) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(c.Listener.Addr().String())
}

// withPort rewrites u to reach the same port through host.
func withHost(t *testing.T, raw, host string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host + ":" + u.Port()
	return u.String()
}

// TestDialTimeAddressGuard checks the default refusal of loopback targets,
// at dial time (a name that resolves to one is refused as well), both for
// the URL itself and for a redirect from an allowed server, and that
// AllowLocalTargets lifts it.
func TestDialTimeAddressGuard(t *testing.T) {
	target := newCounted(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	// front stands for a public service: the test marks its address as
	// allowed; it redirects to the loopback target.
	front := newCounted(t, func(w http.ResponseWriter, r *http.Request) {
		to := target.URL + "/ok"
		if r.URL.Query().Get("by") == "name" {
			to = withHost(t, to, "localhost")
		}
		http.Redirect(w, r, to, http.StatusFound)
	})
	frontAddr := front.addrPort(t)
	markFront := func(o *options) { o.allowed = func(ap netip.AddrPort) bool { return ap == frontAddr } }
	probe := Probe{Timeout: 2 * time.Second}

	tests := []struct {
		name    string
		checker *Checker
		url     string
		want    Outcome
		detail  string
		reached bool
	}{
		{"loopback literal", NewChecker(nil), target.URL + "/ok", Refused, "address not allowed: loopback", false},
		{"name resolving to loopback", NewChecker(nil), withHost(t, target.URL+"/ok", "localhost"), Refused, "address not allowed: loopback", false},
		{"redirect to loopback", NewChecker(nil, markFront), front.URL + "/", Refused, "redirect refused (status 302): address not allowed: loopback", false},
		{"redirect to a name resolving to loopback", NewChecker(nil, markFront), front.URL + "/?by=name", Refused, "redirect refused (status 302): address not allowed: loopback", false},
		{"allowed with AllowLocalTargets", NewChecker(nil, AllowLocalTargets()), target.URL + "/ok", OK, "status 200", true},
		{"redirect allowed with AllowLocalTargets", NewChecker(nil, AllowLocalTargets()), front.URL + "/", OK, "status 200", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := target.hits.Load()
			p := probe
			p.URL = tt.url
			r := tt.checker.Check(context.Background(), p)
			if r.Outcome != tt.want || !strings.HasPrefix(r.Detail, tt.detail) {
				t.Fatalf("Check = %s %q; want %s %q", r.Outcome, r.Detail, tt.want, tt.detail)
			}
			if reached := target.hits.Load() > before; reached != tt.reached {
				t.Errorf("target reached = %v, want %v", reached, tt.reached)
			}
			if tt.want == Refused && (r.Reason() != tt.detail || strings.Contains(r.Reason(), "127.0.0.1")) {
				t.Errorf("Reason() = %q; want only the status and the fixed class %q", r.Reason(), tt.detail)
			}
		})
	}
}

// TestRedirectDowngradeRefused checks that a redirect from https to http
// is refused before any request reaches the http target, while https to
// https and http to https are followed.
func TestRedirectDowngradeRefused(t *testing.T) {
	plain := newCounted(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	var tlsURL string
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			http.Redirect(w, r, plain.URL+"/secret?token=x", http.StatusMovedPermanently)
		case "/same":
			http.Redirect(w, r, tlsURL+"/ok", http.StatusFound)
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	defer tlsSrv.Close()
	tlsURL = tlsSrv.URL
	up := newCounted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, tlsURL+"/ok", http.StatusTemporaryRedirect)
	})
	// The test server's own transport trusts its certificate; the
	// redirect policy belongs to the client, whatever the transport.
	c := NewChecker(tlsSrv.Client().Transport)
	probe := func(u string) Probe { return Probe{URL: u, Timeout: 2 * time.Second} }

	r := c.Check(context.Background(), probe(tlsURL+"/down"))
	want := "redirect refused (status 301): downgrade from https"
	if r.Outcome != Refused || r.Detail != want || r.Reason() != want {
		t.Errorf("https to http: %s %q / %q; want refused %q", r.Outcome, r.Detail, r.Reason(), want)
	}
	if n := plain.hits.Load(); n != 0 {
		t.Errorf("the http target got %d requests after a refused downgrade", n)
	}
	if r := c.Check(context.Background(), probe(tlsURL+"/same")); !r.OK() {
		t.Errorf("https to https: %s %q", r.Outcome, r.Detail)
	}
	if r := c.Check(context.Background(), probe(up.URL+"/")); !r.OK() {
		t.Errorf("http to https: %s %q", r.Outcome, r.Detail)
	}
}
