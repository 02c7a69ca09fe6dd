package circuitbreaker

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// CircuitBreakedServiceProps configures a CircuitBreakedService. The zero
// value is valid: a new table, the mock API, and one monitored service
// ("mock-api") that checks the mock API's health path every minute.
type CircuitBreakedServiceProps struct {
	// Services are the monitored services, one circuit and one EventBridge
	// rule each. Default: one service with ID "mock-api" that monitors the
	// mock API (an error when the mock API is disabled).
	Services []MonitoredService

	// Table is an existing state table (partition key "id", a string) to use
	// instead of creating one. Default: a new table with on-demand billing,
	// AWS-managed encryption, point-in-time recovery and TTL on "expiresAt".
	Table awsdynamodb.ITable
	// TableRemovalPolicy applies to the table the construct creates; it is an
	// error together with Table. Default: awscdk.RemovalPolicy_RETAIN, so
	// the circuits survive a `cdk destroy`.
	TableRemovalPolicy awscdk.RemovalPolicy

	// Architecture of the updater function and of the default extension
	// layer. Default: ARM_64. AttachTo adds a layer that matches each
	// function's own architecture whatever this says.
	Architecture awslambda.Architecture

	// DisableMockAPI turns off the mock REST API, for users who monitor only
	// real services. Default: false, the mock API is created: a public,
	// regional REST API without authorization that answers GET on
	// /api/resource and /api/resource/health (throttled to 50 requests per
	// second), holding no data.
	DisableMockAPI bool
	// MockAPIAccountLogging turns on the mock API's access and execution
	// logs. API Gateway writes them only through the region-wide CloudWatch
	// role of the account, so this also creates an AWS::ApiGateway::Account
	// resource and its role, which replace that account setting for the
	// whole region and are retained when the stack is deleted. Default:
	// false, the account is left alone and the stage keeps only metrics.
	MockAPIAccountLogging bool

	// AllowLocalHealthCheckTargets lets the updater's checks connect to
	// loopback, link-local and instance-metadata addresses. Default: false,
	// such connections are refused, checked at dial time after name
	// resolution, so a monitored service that redirects there (or a name
	// that resolves there) cannot make the updater probe them; private
	// ranges such as 10.0.0.0/8 stay allowed. It sets the updater's
	// CIRCUIT_BREAKER_ALLOW_LOCAL_TARGETS, not the rule input, so whoever
	// may invoke the updater cannot turn it on.
	AllowLocalHealthCheckTargets bool

	// DisableEvents turns off the state-change events. Default: false, a
	// function reads the table's stream and puts one EventBridge event per
	// transition. A Table passed in must then have a stream with new and
	// old images.
	DisableEvents bool
	// EventBus receives the state-change events. Default: the account's
	// default event bus.
	EventBus awsevents.IEventBus
	// DisableAlarms turns off the CloudWatch alarm per circuit. Default:
	// false, one alarm per service fires while its circuit is OPEN.
	DisableAlarms bool
	// DisableDashboard turns off the CloudWatch dashboard. Default: false, a
	// dashboard with one row per circuit.
	DisableDashboard bool

	// Extension tunes the extension in the functions passed to AttachTo.
	// Default: the extension's own defaults (see docs/extension.md).
	Extension ExtensionSettings
}

// MonitoredService is one downstream service whose circuit the updater
// moves.
type MonitoredService struct {
	// ID names the circuit: 1 to 64 letters, digits, '-' or '_', starting
	// with a letter or digit. It is the table key and part of the rule's
	// construct ID, so changing it replaces the rule.
	ID string
	// URL is the absolute http(s) URL the updater checks. Default: the mock
	// API's health path (an error when the mock API is disabled).
	URL string
	// Schedule runs the check. Default: rate(1 minute), EventBridge's
	// shortest rate (HealthCheck.CheckInterval checks more often).
	Schedule awsevents.Schedule
	// HealthCheck tunes the check. Default: the updater's defaults.
	HealthCheck HealthCheck
	// Breaker tunes the state machine, for the updater and the extension
	// alike. Default: the updater's defaults.
	Breaker BreakerSettings
	// Passive tunes failure detection from the calls that attached
	// functions report. Default: the extension's defaults.
	Passive PassiveDetection
	// ReadCopies is how many items hold the circuit for the extensions'
	// refreshes, the circuit item counting as one (1..16): each execution
	// environment reads one of them, picked at random, so each item takes
	// 1/ReadCopies of a fleet's reads (DynamoDB serves one item at most
	// 3,000 read units a second). Every write of the circuit then writes
	// each copy too. Default: 4, which keeps one circuit under half an
	// item's read limit up to about 12,000 busy environments.
	ReadCopies int
}

// PassiveDetection tunes how the extension trips a circuit from the
// outcomes of real calls, aggregated across every execution environment,
// and how many trial calls a HALF_OPEN circuit lets through. Zero fields
// keep the defaults; each field documents its default and range.
type PassiveDetection = circuit.RateSettings

// HealthCheck tunes the updater's check of one service. Zero fields keep
// the updater's defaults; each field documents its default and range.
type HealthCheck = appconfig.HealthCheck

// BreakerSettings tunes the state machine of one circuit, for the updater
// and the extension alike. Zero fields keep the defaults; each field
// documents its default and range.
type BreakerSettings = circuit.Settings

// ExtensionSettings tune the extension through environment variables of
// the functions passed to AttachTo: the same type the extension reads
// them into. Zero fields keep the extension's defaults; each field
// documents its default, range and variable.
type ExtensionSettings = policy.Extension

// everyMinute is the default schedule, and the only one CheckInterval
// works with.
const everyMinute = "rate(1 minute)"

var ratePattern = regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$`)
var cronPattern = regexp.MustCompile(`^cron\(\S+ \S+ \S+ \S+ \S+ \S+\)$`)

// validateSchedule checks an EventBridge schedule expression: a rate of at
// least one minute with the right unit, or a six-field cron expression.
func validateSchedule(expr string) error {
	if m := ratePattern.FindStringSubmatch(expr); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 {
			return fmt.Errorf("schedule %q: the rate must be a whole number of at least 1", expr)
		}
		if (n == 1) != !strings.HasSuffix(m[2], "s") {
			return fmt.Errorf("schedule %q: use the singular unit for 1 and the plural otherwise, as EventBridge requires", expr)
		}
		return nil
	}
	if cronPattern.MatchString(expr) {
		return nil
	}
	return fmt.Errorf("schedule %q is neither rate(N unit) with unit minute(s), hour(s) or day(s), nor cron(six fields)", expr)
}

// validateURL checks that raw is an absolute http or https URL with a host.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: want an absolute http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	return nil
}

// validate checks the props and fills in defaults. It returns the services
// to monitor, or one error that names every problem at once: the props' own
// first, then each service's on one line that names the service once. Each
// problem names the field and the values it accepts.
func (p *CircuitBreakedServiceProps) validate() ([]MonitoredService, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if p.Table != nil && p.TableRemovalPolicy != "" {
		add("TableRemovalPolicy applies only to a table the construct creates; remove it or do not pass Table")
	}
	if p.Table != nil && !p.DisableEvents && p.Table.TableStreamArn() == nil {
		add("the Table passed in has no stream, which the state-change events read: enable a stream with new and old images on it, or set DisableEvents")
	}
	if p.DisableMockAPI && p.MockAPIAccountLogging {
		add("MockAPIAccountLogging is set but DisableMockAPI is true")
	}
	if p.DisableEvents && p.EventBus != nil {
		add("EventBus is set but DisableEvents is true")
	}
	if arch := p.Architecture; arch != nil && goarch(arch) == "" {
		add("unsupported architecture %s: want ARM_64 or X86_64", *arch.Name())
	}
	if err := p.Extension.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add("Extension.%s", line)
		}
	}

	services := p.Services
	if len(services) == 0 {
		if p.DisableMockAPI {
			add("no Services given and the mock API is disabled: add at least one MonitoredService with a URL")
		}
		services = []MonitoredService{{ID: DefaultServiceID}}
	}
	seen := map[string]bool{}
	out := make([]MonitoredService, 0, len(services))
	for i, s := range services {
		name := fmt.Sprintf("service %q", s.ID)
		var bad []string
		if err := circuit.ValidateID(s.ID); err != nil {
			name = fmt.Sprintf("Services[%d]", i)
			bad = append(bad, fmt.Sprintf("ID: %v", err))
		} else if seen[s.ID] {
			name = fmt.Sprintf("Services[%d]", i)
			bad = append(bad, fmt.Sprintf("duplicate service ID %q: IDs must be unique", s.ID))
		}
		seen[s.ID] = true
		if s.Schedule == nil {
			s.Schedule = awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1)))
		}
		bad = append(bad, s.problems(p.DisableMockAPI)...)
		if len(bad) > 0 {
			add("%s: %s", name, strings.Join(bad, "; "))
			continue
		}
		out = append(out, s)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("circuitbreaker: invalid props:\n  %s", strings.Join(problems, "\n  "))
	}
	return out, nil
}

// problems lists what is wrong with one service, in the props' field names,
// each with the values the field accepts. Each group of settings checks
// itself with the check its runtime uses (circuit.Settings and
// circuit.RateSettings are what the extension validates its policies
// with); when every group passes, the rule input is also parsed by the
// updater's own parser, so anything that synthesizes is accepted at run
// time.
func (s MonitoredService) problems(mockAPIDisabled bool) []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	addErr := func(err error) {
		if err != nil {
			bad = append(bad, err.Error())
		}
	}
	switch {
	case s.URL == "":
		if mockAPIDisabled {
			add("no URL and the mock API is disabled: give the service a URL")
		}
	case *awscdk.Token_IsUnresolved(s.URL):
		// A token, such as another construct's URL, resolves at deploy time.
	default:
		addErr(validateURL(s.URL))
	}
	addErr(validateSchedule(*s.Schedule.ExpressionString()))

	group := func(name string, err error) {
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				bad = append(bad, name+"."+line)
			}
		}
	}
	group("HealthCheck", s.HealthCheck.Validate())
	if expr := *s.Schedule.ExpressionString(); s.HealthCheck.CheckInterval != 0 && expr != everyMinute {
		add("HealthCheck.CheckInterval needs the schedule %s (the default), not %s: each run checks for up to a minute", everyMinute, expr)
	}
	pol := s.policy().WithDefaults()
	group("Breaker", pol.Breaker.Validate())
	group("Passive", pol.Passive.Validate())
	if len(bad) > 0 {
		return bad
	}
	if err := s.checkRuleInput(); err != nil {
		add("%v", err)
	}
	return bad
}

// checkRuleInput parses the service's rule input with the updater's own
// parser.
func (s MonitoredService) checkRuleInput() error {
	_, err := s.updaterConfig()
	return err
}

// updaterConfig is the updater's view of the service's rule input. A URL
// that is a token (or empty: the mock API) is replaced by a placeholder,
// since it resolves only at deploy time.
func (s MonitoredService) updaterConfig() (updater.Config, error) {
	u := s.URL
	if u == "" || *awscdk.Token_IsUnresolved(u) {
		u = "https://placeholder.invalid/health"
	}
	data, err := json.Marshal(s.ruleInput(u))
	if err != nil {
		return updater.Config{}, fmt.Errorf("encode rule input: %w", err)
	}
	return updater.ParseInput(data)
}

// updaterTimeout is the updater function's timeout: long enough for the
// longest invocation of any service (see updater.FunctionTimeout).
func updaterTimeout(services []MonitoredService) time.Duration {
	cfgs := make([]updater.Config, 0, len(services))
	for _, s := range services {
		cfg, err := s.updaterConfig()
		if err != nil {
			panic(fmt.Sprintf("circuitbreaker: service %q: %v", s.ID, err)) // validate already parsed it
		}
		cfgs = append(cfgs, cfg)
	}
	return updater.FunctionTimeout(cfgs...)
}

// policy is the extension's view of the service's settings: the state
// machine's and passive detection's, zero fields meaning defaults.
func (s MonitoredService) policy() policy.Policy {
	return policy.Policy{Passive: s.Passive, Breaker: s.Breaker}
}

// ruleInput is the updater's input for one service: the keys ID and URL of
// the original sample, plus the settings that differ from the defaults.
func (s MonitoredService) ruleInput(url string) map[string]interface{} {
	in := map[string]interface{}{"ID": s.ID, "URL": url}
	put := func(key string, d time.Duration) {
		if d != 0 {
			in[key] = d.String()
		}
	}
	put("Timeout", s.HealthCheck.Timeout)
	put("SlowCallThreshold", s.HealthCheck.SlowCallThreshold)
	put("OpenCooldown", s.Breaker.OpenCooldown)
	put("MaxOpenCooldown", s.Breaker.MaxOpenCooldown)
	put("ConfirmInterval", s.HealthCheck.ConfirmInterval)
	put("CheckInterval", s.HealthCheck.CheckInterval)
	if s.HealthCheck.DisableConfirmation {
		in["ConfirmInterval"] = "0s"
	}
	if s.HealthCheck.ExpectedStatus != "" {
		in["ExpectedStatus"] = s.HealthCheck.ExpectedStatus
	}
	if s.Breaker.FailureThreshold != 0 {
		in["FailureThreshold"] = s.Breaker.FailureThreshold
	}
	if s.Breaker.SuccessThreshold != 0 {
		in["SuccessThreshold"] = s.Breaker.SuccessThreshold
	}
	if s.ReadCopies != 0 {
		in["ReadCopies"] = s.ReadCopies
	}
	return in
}
