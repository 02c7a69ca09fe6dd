package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// printer writes time-stamped lines from several goroutines.
type printer struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

func (p *printer) printf(kind, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s  %-6s %s\n", p.now().Format("15:04:05.000"), kind, fmt.Sprintf(format, args...))
}

// transitionLine formats an updater log line about a transition or a
// failed trial; ok is false for other lines.
func transitionLine(line []byte) (string, bool) {
	var l struct {
		Msg     string `json:"msg"`
		Service string `json:"service"`
		From    string `json:"from"`
		To      string `json:"to"`
		Reason  string `json:"reason"`
		Version int64  `json:"version"`
	}
	if json.Unmarshal(bytes.TrimSpace(line), &l) != nil {
		return "", false
	}
	switch l.Msg {
	case "circuit transition":
		return fmt.Sprintf("%s %s → %s (v%d): %s", l.Service, l.From, l.To, l.Version, l.Reason), true
	case "circuit trial failed":
		if l.Reason == "" {
			return fmt.Sprintf("%s trial failed, stays OPEN with a longer cool-down", l.Service), true
		}
		return fmt.Sprintf("%s trial failed, stays OPEN: %s", l.Service, l.Reason), true
	}
	return "", false
}

// checkLine formats the updater's result for one invocation: its last
// check, and how many it ran when it confirmed a failure.
func checkLine(o updater.Output) string {
	result := "ok"
	if !o.Check.OK {
		result = "FAIL " + o.Check.Detail
	}
	line := fmt.Sprintf("%s %s %dms → %s (%s)", o.ID, result, o.Check.LatencyMs, o.EffectiveState, o.Change)
	if o.Checks > 1 {
		line += fmt.Sprintf(", last of %d checks", o.Checks)
	}
	return line
}

// responseLine formats MyMicroservice's API Gateway proxy response.
func responseLine(raw []byte, took time.Duration) string {
	var r struct {
		StatusCode int    `json:"statusCode"`
		Body       string `json:"body"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Sprintf("unreadable response %q", raw)
	}
	var body struct {
		Message string `json:"message"`
		Source  string `json:"source"`
		Circuit string `json:"circuit"`
	}
	_ = json.Unmarshal([]byte(r.Body), &body)
	ms := took.Round(time.Millisecond)
	switch {
	case body.Source == "fallback" && body.Circuit != "":
		return fmt.Sprintf("%d FALLBACK (circuit %s) %s", r.StatusCode, body.Circuit, ms)
	case body.Source == "fallback":
		return fmt.Sprintf("%d FALLBACK: %s %s", r.StatusCode, shorten(body.Message, 90), ms)
	default:
		return fmt.Sprintf("%d downstream: %s %s", r.StatusCode, shorten(body.Message, 90), ms)
	}
}

// statesLine formats the circuits read from the table, in ids order.
func statesLine(ids []string, cs map[string]circuit.Circuit, now time.Time) string {
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		c, ok := cs[id]
		if !ok {
			parts = append(parts, id+"=CLOSED (no item yet)")
			continue
		}
		s := fmt.Sprintf("%s=%s v%d", id, c.EffectiveState(now), c.Version)
		switch {
		case c.State == circuit.Closed && c.ConsecutiveFailures > 0:
			s += fmt.Sprintf(" failures=%d", c.ConsecutiveFailures)
		case c.State == circuit.HalfOpen:
			s += fmt.Sprintf(" successes=%d", c.ConsecutiveSuccesses)
		case c.State == circuit.Open && !c.RetryAt.IsZero():
			if wait := c.RetryAt.Sub(now); wait > 0 {
				s += fmt.Sprintf(" retry in %s", wait.Round(100*time.Millisecond))
			} else {
				s += " retry due"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "  ")
}

// stateKey is what must change for the state line to be printed again.
func stateKey(cs map[string]circuit.Circuit) string {
	keys := make([]string, 0, len(cs))
	for id, c := range cs {
		keys = append(keys, fmt.Sprintf("%s:%s:%d:%d:%d", id, c.State, c.Version, c.ConsecutiveFailures, c.ConsecutiveSuccesses))
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// lineWriter calls fn for every complete line written to it.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(line []byte)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 1<<20 { // a runaway line: drop it
		w.buf = w.buf[:0]
	}
	return len(p), nil
}
