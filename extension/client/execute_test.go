package client

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var errBadInput = errors.New("bad input")

func TestExecute(t *testing.T) {
	const closedAnswer = `{"id":"s","state":"CLOSED","allowed":true}`
	boom := errors.New("boom")
	tests := []struct {
		name      string
		answer    string
		call      func(ctx context.Context) (int, error)
		opts      []CallOption
		cancelCtx bool
		want      int
		wantErr   error // errors.Is on Execute's error
		fallback  error // errors.Is on the fallback's error; nil: no fallback
		reported  int
		success   bool
	}{
		{name: "value returned", answer: closedAnswer, call: func(context.Context) (int, error) { return 42, nil }, want: 42, reported: 1, success: true},
		{name: "open: fallback's value", answer: `{"id":"s","state":"OPEN","allowed":false}`, call: func(context.Context) (int, error) { return 42, nil }, want: -1, fallback: ErrOpen},
		{name: "failure: fallback's value", answer: closedAnswer, call: func(context.Context) (int, error) { return 0, boom }, want: -1, fallback: boom, reported: 1},
		{name: "ignored error: unchanged, no fallback, no report", answer: closedAnswer,
			call: func(context.Context) (int, error) { return 7, errBadInput },
			opts: []CallOption{IsFailure(func(err error) bool { return !errors.Is(err, errBadInput) })},
			want: 7, wantErr: errBadInput},
		{name: "counted error under IsFailure", answer: closedAnswer,
			call: func(context.Context) (int, error) { return 0, boom },
			opts: []CallOption{IsFailure(func(err error) bool { return !errors.Is(err, errBadInput) })},
			want: -1, fallback: boom, reported: 1},
		{name: "timeout: failure, fallback with ErrTimeout", answer: closedAnswer,
			call: func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
			opts: []CallOption{WithCallTimeout(30 * time.Millisecond)},
			want: -1, fallback: ErrTimeout, reported: 1},
		{name: "caller's context cancelled during the call: not a failure", answer: closedAnswer, cancelCtx: true,
			call: func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
			want: 0, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newRecordingExtension(t, tt.answer)
			c := New(WithBaseURL(x.srv.URL), WithToken("tok"), WithTimeout(time.Second))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			call := tt.call
			if tt.cancelCtx {
				call = func(ctx context.Context) (int, error) { cancel(); return tt.call(ctx) }
			}
			var fbErr error
			got, err := Execute(ctx, c, "s", call, func(_ context.Context, err error) (int, error) { fbErr = err; return -1, nil }, tt.opts...)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Execute = %d, %v; want %d, %v", got, err, tt.want, tt.wantErr)
			}
			if (fbErr != nil) != (tt.fallback != nil) || !errors.Is(fbErr, tt.fallback) {
				t.Errorf("fallback got %v, want %v", fbErr, tt.fallback)
			}
			out := x.outcomes()
			if len(out) != tt.reported {
				t.Fatalf("reported %+v, want %d outcomes", out, tt.reported)
			}
			if tt.reported == 1 && *out[0].Success != tt.success {
				t.Errorf("reported success=%v, want %v", *out[0].Success, tt.success)
			}
		})
	}
}

// A timed-out call reports the timeout as its latency, and its error says
// both what happened and the call's own error.
func TestExecuteTimeoutReport(t *testing.T) {
	x := newRecordingExtension(t, `{"id":"s","state":"CLOSED","allowed":true}`)
	c := New(WithBaseURL(x.srv.URL), WithToken("tok"), WithTimeout(time.Second))
	_, err := Execute(context.Background(), c, "s", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, nil, WithCallTimeout(40*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "40ms") {
		t.Fatalf("err = %v, want ErrTimeout after 40ms", err)
	}
	if out := x.outcomes(); len(out) != 1 || *out[0].Success || out[0].LatencyMs != 40 {
		t.Errorf("reported %+v, want one failure of 40 ms", out)
	}
}

// A context already done is returned before the extension is asked.
func TestExecuteCancelledBeforehand(t *testing.T) {
	x := newRecordingExtension(t, `{"id":"s","state":"CLOSED","allowed":true}`)
	c := New(WithBaseURL(x.srv.URL), WithToken("tok"), WithTimeout(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := c.Do(ctx, "s", func(context.Context) error { called = true; return nil }, func(context.Context, error) error { return nil })
	if !errors.Is(err, context.Canceled) || called || len(x.outcomes()) != 0 {
		t.Errorf("Do on a cancelled context = %v, called=%v, reported %v", err, called, x.outcomes())
	}
}

func TestKillSwitch(t *testing.T) {
	t.Setenv(EnvDisabled, "true")
	x := newRecordingExtension(t, `{"id":"s","state":"OPEN","allowed":false}`)
	c := New(WithBaseURL(x.srv.URL), WithToken("tok"), WithTimeout(time.Second))
	if ok, err := c.Allow(context.Background(), "s"); !ok || err != nil {
		t.Errorf("Allow = %v, %v; want allowed", ok, err)
	}
	v, err := Execute(context.Background(), c, "s", func(context.Context) (int, error) { return 1, errors.New("down") }, nil)
	if v != 1 || err == nil || err.Error() != "down" {
		t.Errorf("Execute = %d, %v; want the call's own value and error", v, err)
	}
	if out := x.outcomes(); len(out) != 0 {
		t.Errorf("reported %+v with the kill switch on", out)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.lookups != 0 {
		t.Errorf("asked the extension %d times with the kill switch on", x.lookups)
	}
}

// A refused token and an absent extension are logged at warn level, once,
// then at most once per WarnInterval.
func TestMisconfigurationWarnings(t *testing.T) {
	srv := fakeExtension(t, 0)
	tests := []struct {
		name, base, token, want string
	}{
		{"wrong token", srv.URL, "wrong", "wrong token"},
		{"extension absent", "http://127.0.0.1:1", "tok", "extension absent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			misconfig.mu.Lock()
			misconfig.last = time.Time{}
			misconfig.mu.Unlock()
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			c := New(WithBaseURL(tt.base), WithToken(tt.token), WithTimeout(time.Second), WithLogger(log))
			for range 5 {
				_, _ = c.Allow(context.Background(), "up")
			}
			if n := strings.Count(buf.String(), `"level":"WARN"`); n != 1 {
				t.Fatalf("%d warnings for 5 refused lookups, want 1:\n%s", n, buf.String())
			}
			if !strings.Contains(buf.String(), tt.want) || !strings.Contains(buf.String(), "failure policy") {
				t.Errorf("warning does not name the cause %q and its effect:\n%s", tt.want, buf.String())
			}
			misconfig.mu.Lock()
			misconfig.last = time.Now().Add(-WarnInterval)
			misconfig.mu.Unlock()
			_, _ = c.Allow(context.Background(), "up")
			if n := strings.Count(buf.String(), `"level":"WARN"`); n != 2 {
				t.Errorf("%d warnings a minute later, want 2", n)
			}
		})
	}
}
