package circuit

// CheckResult is the outcome of one health check, as the state machine
// sees it.
type CheckResult struct {
	// OK is true when the check succeeded.
	OK bool
	// Reason describes the outcome, such as "status 500" or "timeout after
	// 4s"; it becomes part of a transition's reason.
	Reason string
}

// Success returns a successful CheckResult.
func Success(reason string) CheckResult { return CheckResult{OK: true, Reason: reason} }

// Failure returns a failed CheckResult.
func Failure(reason string) CheckResult { return CheckResult{OK: false, Reason: reason} }
