package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Probe request limits.
const (
	// UserAgent identifies the updater's checks in the service's logs.
	UserAgent = "lambda-circuit-breaker-updater/1"
	// MaxBodyBytes is how much of a response body a check reads.
	MaxBodyBytes = 64 << 10
	// MaxRedirects is how many redirects a check follows.
	MaxRedirects = 3
)

// Outcome classifies a check.
type Outcome string

// The outcomes of a check. Every one but OK is a failure.
const (
	OK         Outcome = "ok"
	Timeout    Outcome = "timeout"
	Connection Outcome = "connection"
	TLS        Outcome = "tls"
	Redirects  Outcome = "redirects"
	Refused    Outcome = "refused"
	Status     Outcome = "status"
	Slow       Outcome = "slow"
)

// Result is the outcome of one check.
type Result struct {
	// Outcome is OK or the kind of failure.
	Outcome Outcome
	// StatusCode is the final response's status, or 0 when none arrived.
	StatusCode int
	// Latency is the time from sending the request to the end of the
	// bounded body read, or to the failure.
	Latency time.Duration
	// Detail is a short human explanation, such as "status 500 not in
	// 200-299". For connection and TLS errors it holds the error text.
	Detail string
}

// OK reports whether the check succeeded.
func (r Result) OK() bool { return r.Outcome == OK }

// Reason is what the circuit may record about the check, which attached
// functions and change events can read: Detail, except that connection
// and TLS errors keep only their fixed class, so no error text (addresses,
// ports, what answered) reaches the circuit. A refused redirect's Detail
// is already only its status and a fixed class.
func (r Result) Reason() string {
	switch r.Outcome {
	case Connection:
		return "connection error"
	case TLS:
		return "TLS error"
	}
	return r.Detail
}

var errTooManyRedirects = errors.New("too many redirects")

// Checker runs checks. Its zero value is not usable; call NewChecker.
type Checker struct {
	client *http.Client
}

// Option tunes a Checker.
type Option func(*options)

type options struct {
	allowLocal bool
	allowed    func(netip.AddrPort) bool
}

// AllowLocalTargets lets checks connect to loopback, link-local and
// instance-metadata addresses, which a Checker refuses by default. Private
// ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) are always
// allowed, since internal services live there. Tests and the local stack,
// which run everything on 127.0.0.1, turn it on.
func AllowLocalTargets() Option { return func(o *options) { o.allowLocal = true } }

// NewChecker returns a Checker sending requests through transport, or,
// when transport is nil, through a transport that opens a fresh connection
// per check (honouring the proxy environment) and refuses at dial time,
// after name resolution, to connect to loopback, link-local, unspecified
// and metadata addresses (see AllowLocalTargets). With a proxy, that check
// applies to the connection to the proxy.
//
// Whatever the transport, it follows at most MaxRedirects redirects and
// refuses one that leaves https for http.
func NewChecker(transport http.RoundTripper, opts ...Option) *Checker {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if transport == nil {
		dialer := &net.Dialer{KeepAlive: -1}
		if !o.allowLocal {
			dialer.Control = dialGuard(o.allowed)
		}
		transport = &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            dialer.DialContext,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
			DisableKeepAlives:      true,
			ForceAttemptHTTP2:      true,
			MaxResponseHeaderBytes: 64 << 10,
		}
	}
	return &Checker{client: &http.Client{
		Transport:     transport,
		CheckRedirect: checkRedirect,
	}}
}

// checkRedirect follows at most MaxRedirects redirects, never from https
// to http, and records the status of each one it follows.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return errTooManyRedirects
	}
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	if req.URL.Scheme != "https" {
		for _, v := range via {
			if v.URL.Scheme == "https" {
				return &redirectError{status: status, class: "downgrade from https"}
			}
		}
	}
	if t := traceFrom(req.Context()); t != nil {
		t.status = status
	}
	return nil
}

// Check GETs p.URL once and judges the response. p must be valid (see
// Probe.Validate); zero fields take their defaults. When ctx itself ends
// the result is a Timeout; callers that care tell the two apart with
// ctx.Err().
func (c *Checker) Check(ctx context.Context, p Probe) Result {
	p = p.WithDefaults()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()

	ctx = context.WithValue(ctx, traceKey{}, &redirectTrace{})

	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return Result{Outcome: Connection, Detail: fmt.Sprintf("bad request: %v", err)}
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Cache-Control", "no-cache")

	resp, err := c.client.Do(req)
	if err != nil {
		return failed(ctx, err, p, time.Since(start), 0)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyBytes)); err != nil {
		return failed(ctx, err, p, time.Since(start), resp.StatusCode)
	}
	latency := time.Since(start)
	r := Result{StatusCode: resp.StatusCode, Latency: latency}
	switch {
	case !p.ExpectedStatus.Contains(resp.StatusCode):
		r.Outcome = Status
		r.Detail = fmt.Sprintf("status %d not in %s", resp.StatusCode, p.ExpectedStatus)
	case latency > p.SlowCallThreshold:
		r.Outcome = Slow
		r.Detail = fmt.Sprintf("slow call: %s > %s (status %d)", latency.Round(time.Millisecond), p.SlowCallThreshold, resp.StatusCode)
	default:
		r.Outcome = OK
		r.Detail = fmt.Sprintf("status %d in %s", resp.StatusCode, latency.Round(time.Millisecond))
	}
	return r
}

// failed classifies a transport error.
func failed(ctx context.Context, err error, p Probe, latency time.Duration, status int) Result {
	r := Result{StatusCode: status, Latency: latency}
	var netErr net.Error
	if detail, ok := asRefused(ctx, err); ok {
		r.Outcome, r.Detail = Refused, detail
		return r
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || (errors.As(err, &netErr) && netErr.Timeout()):
		r.Outcome = Timeout
		r.Detail = fmt.Sprintf("timeout after %s", p.Timeout)
	case errors.Is(err, errTooManyRedirects):
		r.Outcome = Redirects
		r.Detail = fmt.Sprintf("more than %d redirects", MaxRedirects)
	case isTLS(err):
		r.Outcome = TLS
		r.Detail = "TLS error: " + rootCause(err)
	default:
		r.Outcome = Connection
		r.Detail = "connection error: " + rootCause(err)
	}
	return r
}

func isTLS(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
		alert    tls.AlertError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &header) || errors.As(err, &alert) ||
		strings.Contains(err.Error(), "tls: ") ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// rootCause drops the "Get \"url\": " prefix that net/http adds, keeping
// the message short and free of the URL.
func rootCause(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\": "); i >= 0 && strings.HasPrefix(msg, "Get \"") {
		msg = msg[i+3:]
	}
	const maxLen = 200
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "..."
	}
	return msg
}
