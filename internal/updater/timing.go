package updater

import (
	"time"
)

// Timing of one invocation.
const (
	// DefaultConfirmInterval spaces the confirmation checks that follow a
	// failed check of a CLOSED circuit.
	DefaultConfirmInterval = 5 * time.Second
	// MaxConfirmInterval bounds ConfirmInterval.
	MaxConfirmInterval = 30 * time.Second
	// MinCheckInterval and MaxCheckInterval bound CheckInterval.
	MinCheckInterval = time.Second
	MaxCheckInterval = 30 * time.Second
	// RunWindow bounds one invocation: no check starts unless it and its
	// write can end within RunWindow of the invocation's start, so that
	// an invocation of a rule scheduled every minute ends before the next
	// one begins.
	RunWindow = 55 * time.Second
	// WriteAllowance is the time kept after each check for its read and
	// conditional write.
	WriteAllowance = time.Second
	// MinCheckBudget is the shortest check the updater starts when the
	// function's deadline cuts the first check's Timeout; with less time
	// left it returns an error without checking.
	MinCheckBudget = 100 * time.Millisecond
	// timeoutSlack is what FunctionTimeout adds to the longest run for the
	// runtime and the SDK.
	timeoutSlack = 2 * time.Second
)

// MaxRun is the longest an invocation with cfg runs: with CheckInterval,
// RunWindow; otherwise FailureThreshold checks of Timeout, each with its
// write, spaced by ConfirmInterval, and at most RunWindow.
func (cfg Config) MaxRun() time.Duration {
	if cfg.CheckInterval > 0 {
		return RunWindow
	}
	probe := cfg.Probe.WithDefaults()
	settings := cfg.Settings.WithDefaults()
	checks := 1
	if cfg.ConfirmInterval > 0 {
		checks = settings.FailureThreshold
	}
	run := time.Duration(checks)*(probe.Timeout+WriteAllowance) + time.Duration(checks-1)*cfg.ConfirmInterval
	return min(run, RunWindow)
}

// FunctionTimeout is the function timeout that lets every invocation with
// one of cfgs run to its end: the longest MaxRun plus a slack for the
// runtime, rounded up to a whole second. It stays under one minute, so an
// invocation never overlaps the next run of a rule scheduled every minute.
func FunctionTimeout(cfgs ...Config) time.Duration {
	var longest time.Duration
	for _, c := range cfgs {
		longest = max(longest, c.MaxRun())
	}
	return (longest + timeoutSlack + time.Second - 1).Truncate(time.Second)
}
