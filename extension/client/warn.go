package client

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// EnvDisabled is the kill switch: "true" makes every client allow every
// call without asking the extension, and report nothing.
const EnvDisabled = "CIRCUIT_BREAKER_DISABLED"

// WarnInterval is the least time between two warnings of a process about
// a misconfiguration (a refused token, an absent extension); the first
// one is logged at once.
const WarnInterval = time.Minute

// disabledFromEnv reads the kill switch.
func disabledFromEnv() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv(EnvDisabled)), "true")
}

var disabledOnce sync.Once

// logDisabled logs, once per process, that the kill switch is on.
func logDisabled(log *slog.Logger) {
	disabledOnce.Do(func() {
		log.Warn("circuit breaker disabled: " + EnvDisabled + "=true; every call is allowed without asking the extension, and no outcome is reported")
	})
}

// misconfig rate-limits the warnings of a process about a token the
// extension refuses or an extension that is not there: without them the
// failure policy would decide every call, silently.
var misconfig struct {
	mu   sync.Mutex
	last time.Time
}

// warnMisconfigured logs err's cause at warn level when it is a refused
// token or a refused connection, at most once per WarnInterval.
func (c *Client) warnMisconfigured(err error) {
	var cause string
	var e *Error
	switch {
	case errors.As(err, &e) && e.StatusCode == 401:
		cause = "wrong token: the extension refused the " + api.HeaderToken + " header (401); the client sends AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN"
	case errors.Is(err, syscall.ECONNREFUSED):
		cause = "extension absent: nothing listens on " + c.base + "; is the layer attached, and CIRCUIT_BREAKER_PORT the same for the function and the extension?"
	default:
		return
	}
	now := time.Now()
	misconfig.mu.Lock()
	due := misconfig.last.IsZero() || now.Sub(misconfig.last) >= WarnInterval
	if due {
		misconfig.last = now
	}
	misconfig.mu.Unlock()
	if !due {
		return
	}
	policy := "allow"
	if !c.failAllow {
		policy = "deny"
	}
	c.log.Warn("circuit breaker misconfigured: "+cause, "failMode", policy,
		"effect", "the failure policy ("+policy+") decides every call instead of the circuit")
}
