package circuitbreaker

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

func rate(expr string) awsevents.Schedule { return awsevents.Schedule_Expression(jsii.String(expr)) }

func TestPropsValidation(t *testing.T) {
	tests := []struct {
		name    string
		props   CircuitBreakedServiceProps
		wantErr string
	}{
		{"zero value", CircuitBreakedServiceProps{}, ""},
		{"two services", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", URL: "https://a.example/health"}, {ID: "b"}}}, ""},
		{"empty id", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: ""}}}, "empty service ID"},
		{"unsafe id", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a/b"}}}, "may hold only"},
		{"duplicate id", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a"}, {ID: "a"}}}, "duplicate service ID \"a\""},
		{"relative url", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", URL: "/health"}}}, "absolute http"},
		{"ftp url", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", URL: "ftp://x/y"}}}, "absolute http"},
		{"no host", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", URL: "https:///y"}}}, "no host"},
		{"no url without mock", CircuitBreakedServiceProps{DisableMockAPI: true, Services: []MonitoredService{{ID: "a"}}}, "mock API is disabled"},
		{"nothing to monitor", CircuitBreakedServiceProps{DisableMockAPI: true}, "no Services given"},
		{"account logging without mock", CircuitBreakedServiceProps{DisableMockAPI: true, MockAPIAccountLogging: true, Services: []MonitoredService{{ID: "a", URL: "https://a.example/health"}}}, "MockAPIAccountLogging"},
		{"zero rate", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("rate(0 minutes)")}}}, "at least 1"},
		{"wrong unit", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("rate(5 minute)")}}}, "plural"},
		{"seconds", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("rate(30 seconds)")}}}, "neither rate"},
		{"cron", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("cron(0/5 * * * ? *)")}}}, ""},
		{"short cron", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("cron(* * * *)")}}}, "neither rate"},
		{"timeout range", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{Timeout: time.Minute}}}}, "HealthCheck.Timeout"},
		{"threshold range", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Breaker: BreakerSettings{FailureThreshold: 101}}}}, "FailureThreshold"},
		{"cooldown order", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Breaker: BreakerSettings{OpenCooldown: time.Minute, MaxOpenCooldown: time.Second * 10}}}}, "Breaker.MaxOpenCooldown 10s is out of range OpenCooldown (1m0s)"},
		{"status list", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{ExpectedStatus: "2xx"}}}}, "ExpectedStatus"},
		{"slow above timeout", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{Timeout: 2 * time.Second, SlowCallThreshold: 3 * time.Second}}}}, "SlowCallThreshold"},
		{"timeout below default slow", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{Timeout: 2 * time.Second}}}}, ""},
		{"backwards range", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{ExpectedStatus: "299-200"}}}}, "ExpectedStatus"},
		{"passive window", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Passive: PassiveDetection{Window: 7 * time.Second}}}}, `service "a": Passive.Window 7s is out of range 5s..5m0s in steps of 5s`},
		{"passive rate", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Passive: PassiveDetection{FailureRateThreshold: 150}}}}, `service "a": Passive.FailureRateThreshold 150 is out of range 1..100 (percent)`},
		{"passive ok", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Passive: PassiveDetection{FailureRateThreshold: 25, MinimumCalls: 20, Window: time.Minute, HalfOpenProbes: 2, ProbeTimeout: 30 * time.Second}}}}, ""},
		{"probe timeout", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Passive: PassiveDetection{ProbeTimeout: 20 * time.Minute}}}}, "Passive.ProbeTimeout 20m0s is out of range 1s..15m0s"},
		{"read copies", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", ReadCopies: 17}}}, "ReadCopies: 17 is out of range 1..16"},
		{"confirm interval", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{ConfirmInterval: 2 * time.Second}}}}, ""},
		{"confirm interval range", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{ConfirmInterval: time.Minute}}}}, "HealthCheck.ConfirmInterval"},
		{"confirmation off and on", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{ConfirmInterval: time.Second, DisableConfirmation: true}}}}, "DisableConfirmation"},
		{"check interval", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{CheckInterval: 10 * time.Second}}}}, ""},
		{"check interval, explicit minute", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("rate(1 minute)"), HealthCheck: HealthCheck{CheckInterval: 10 * time.Second}}}}, ""},
		{"check interval range", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", HealthCheck: HealthCheck{CheckInterval: 500 * time.Millisecond}}}}, "HealthCheck.CheckInterval"},
		{"check interval, slower schedule", CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a", Schedule: rate("rate(5 minutes)"), HealthCheck: HealthCheck{CheckInterval: 10 * time.Second}}}}, "needs the schedule rate(1 minute)"},
		{"fail mode", CircuitBreakedServiceProps{Extension: ExtensionSettings{FailMode: "open"}}, "FailMode"},
		{"port", CircuitBreakedServiceProps{Extension: ExtensionSettings{Port: 80}}, "Port"},
		{"max age below default interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{MaxAge: 500 * time.Millisecond}}, "Extension.MaxAge 500ms is out of range 1s (the refresh interval)..24h0m0s"},
		{"max age below interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{RefreshInterval: 5 * time.Second, MaxAge: 2 * time.Second}}, "Extension.MaxAge"},
		{"max age with short interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{RefreshInterval: 100 * time.Millisecond, MaxAge: 500 * time.Millisecond}}, ""},
		{"max age off", CircuitBreakedServiceProps{Extension: ExtensionSettings{DisableMaxAge: true}}, ""},
		{"negative max age", CircuitBreakedServiceProps{Extension: ExtensionSettings{MaxAge: -1}}, "Extension.MaxAge -1ns is negative: set DisableMaxAge"},
		{"max age off and set", CircuitBreakedServiceProps{Extension: ExtensionSettings{MaxAge: 5 * time.Second, DisableMaxAge: true}}, "Extension.MaxAge is set but DisableMaxAge is true"},
		{"staleness under a long interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{RefreshInterval: time.Minute}}, "Extension.MaxStaleness 30s: want at least the refresh interval 1m0s"},
		{"staleness under the interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{RefreshInterval: 5 * time.Second, MaxStaleness: 2 * time.Second}}, "Extension.MaxStaleness 2s: want at least the refresh interval 5s"},
		{"staleness equal to the interval", CircuitBreakedServiceProps{Extension: ExtensionSettings{RefreshInterval: 5 * time.Second, MaxStaleness: 5 * time.Second}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.props
			_, err := p.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// A props error names every broken rule at once, names each service once,
// and states the values each field accepts.
func TestPropsErrorNamesEveryProblemOnce(t *testing.T) {
	p := CircuitBreakedServiceProps{
		Extension: ExtensionSettings{Port: 80},
		Services: []MonitoredService{
			{ID: "a", Passive: PassiveDetection{FailureRateThreshold: 150, Window: 7 * time.Second}, Breaker: BreakerSettings{SuccessThreshold: 0, FailureThreshold: 200}},
			{ID: "b"},
			{ID: "c", URL: "ftp://c/health", HealthCheck: HealthCheck{Timeout: 2 * time.Second, SlowCallThreshold: 3 * time.Second}},
			{ID: "a"},
		},
	}
	_, err := p.validate()
	if err == nil {
		t.Fatal("validate() = nil for props with six problems")
	}
	msg := err.Error()
	want := "circuitbreaker: invalid props:\n" +
		"  Extension.Port 80 is out of range 1024..65535\n" +
		`  service "a": Breaker.FailureThreshold 200 is out of range 1..100; Passive.FailureRateThreshold 150 is out of range 1..100 (percent); Passive.Window 7s is out of range 5s..5m0s in steps of 5s` + "\n" +
		`  service "c": URL "ftp://c/health": want an absolute http:// or https:// URL; HealthCheck.SlowCallThreshold 3s: want at most Timeout (2s)` + "\n" +
		`  Services[3]: duplicate service ID "a": IDs must be unique`
	if msg != want {
		t.Errorf("validate() =\n%s\nwant\n%s", msg, want)
	}
	if n := strings.Count(msg, `service "a"`); n != 1 {
		t.Errorf("service \"a\" named %d times, want once", n)
	}
}

func TestTableAndRemovalPolicyConflict(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
	st := awscdk.NewStack(app, jsii.String("S"), nil)
	existing := awsdynamodb.Table_FromTableName(st, jsii.String("Existing"), jsii.String("circuits"))
	p := CircuitBreakedServiceProps{Table: existing, TableRemovalPolicy: awscdk.RemovalPolicy_DESTROY}
	if _, err := p.validate(); err == nil || !strings.Contains(err.Error(), "TableRemovalPolicy applies only") {
		t.Fatalf("validate() = %v, want the Table/TableRemovalPolicy conflict", err)
	}
	p = CircuitBreakedServiceProps{Table: existing}
	if _, err := p.validate(); err == nil || !strings.Contains(err.Error(), "has no stream") {
		t.Fatalf("validate() = %v, want the missing-stream error", err)
	}
	p = CircuitBreakedServiceProps{Table: existing, DisableEvents: true}
	if _, err := p.validate(); err != nil {
		t.Fatalf("validate() = %v for an existing table without events", err)
	}
	withStream := awsdynamodb.Table_FromTableAttributes(st, jsii.String("WithStream"), &awsdynamodb.TableAttributes{
		TableName:      jsii.String("circuits2"),
		TableStreamArn: jsii.String("arn:aws:dynamodb:us-east-1:123456789012:table/circuits2/stream/2026-01-01T00:00:00.000"),
	})
	p = CircuitBreakedServiceProps{Table: withStream}
	if _, err := p.validate(); err != nil {
		t.Fatalf("validate() = %v for an existing table with a stream", err)
	}
}

// mustPanic runs f and returns the message it panicked with, failing the
// test when it returns normally.
func mustPanic(t *testing.T, f func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("no panic, want one")
		}
		msg = fmt.Sprint(r)
	}()
	f()
	return ""
}

// Every error of the construct is a panic whose message starts with
// "circuitbreaker:", from the constructor and the methods alike.
func TestAttachToErrors(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
	st := awscdk.NewStack(app, jsii.String("S"), nil)
	cb := NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{
		Services: []MonitoredService{{ID: "orders"}, {ID: "payments", URL: "https://payments.example/health"}},
	})
	fn := awslambda.NewFunction(st, jsii.String("Fn"), &awslambda.FunctionProps{
		Runtime: awslambda.Runtime_NODEJS_22_X(),
		Handler: jsii.String("index.handler"),
		Code:    awslambda.Code_FromInline(jsii.String("exports.handler = async () => 1")),
	})
	tests := []struct {
		name string
		ids  []string
		want string // "" for no panic
	}{
		{"unknown service", []string{"inventory"}, `circuitbreaker: AttachTo S/Fn: service "inventory" is not monitored (monitored: orders, payments)`},
		{"first attach", []string{"payments"}, ""},
		{"second attach", nil, "circuitbreaker: AttachTo S/Fn: already attached"},
	}
	for _, tt := range tests {
		if tt.want == "" {
			cb.AttachTo(fn, tt.ids...)
			continue
		}
		if msg := mustPanic(t, func() { cb.AttachTo(fn, tt.ids...) }); msg != tt.want {
			t.Errorf("%s: panic %q, want %q", tt.name, msg, tt.want)
		}
	}
	if got := len(cb.Rules()); got != 2 {
		t.Errorf("%d rules, want 2", got)
	}
	if ids := cb.ServiceIDs(); strings.Join(ids, ",") != "orders,payments" {
		t.Errorf("ServiceIDs() = %v", ids)
	}
}

func TestInvalidPropsPanicWithMessage(t *testing.T) {
	app := awscdk.NewApp(nil)
	st := awscdk.NewStack(app, jsii.String("S"), nil)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "duplicate service ID") {
			t.Fatalf("recovered %v, want the validation message", r)
		}
	}()
	NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{Services: []MonitoredService{{ID: "a"}, {ID: "a"}}})
}

func TestRuleInputCarriesOnlySetSettings(t *testing.T) {
	s := MonitoredService{ID: "a", HealthCheck: HealthCheck{Timeout: 2 * time.Second}, Breaker: BreakerSettings{FailureThreshold: 5}}
	in := s.ruleInput("https://x/health")
	if len(in) != 4 || in["Timeout"] != "2s" || in["FailureThreshold"] != 5 || in["ID"] != "a" || in["URL"] != "https://x/health" {
		t.Fatalf("ruleInput = %v", in)
	}
}

func TestAttachToSetsMaxAge(t *testing.T) {
	tests := []struct {
		ext  ExtensionSettings
		want any // nil: unset, the extension's default
	}{
		{ExtensionSettings{}, nil},
		{ExtensionSettings{MaxAge: 5 * time.Second}, "5s"},
		{ExtensionSettings{DisableMaxAge: true}, "0"},
	}
	for _, tt := range tests {
		app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
		st := awscdk.NewStack(app, jsii.String("S"), nil)
		cb := NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{Extension: tt.ext})
		fn := awslambda.NewFunction(st, jsii.String("Fn"), &awslambda.FunctionProps{
			Runtime: awslambda.Runtime_NODEJS_22_X(),
			Handler: jsii.String("index.handler"),
			Code:    awslambda.Code_FromInline(jsii.String("exports.handler = async () => 1")),
		})
		cb.AttachTo(fn)
		if got := functionEnv(t, st, "Fn")[EnvMaxAge]; got != tt.want {
			t.Errorf("%+v: %s = %v, want %v", tt.ext, EnvMaxAge, got, tt.want)
		}
	}
}

// functionEnv returns the environment variables of the function whose
// logical ID starts with prefix.
func functionEnv(t *testing.T, st awscdk.Stack, prefix string) map[string]any {
	t.Helper()
	tpl, _ := json.Marshal(assertions.Template_FromStack(st, nil).ToJSON())
	var parsed struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				Environment struct{ Variables map[string]any }
			}
		}
	}
	if err := json.Unmarshal(tpl, &parsed); err != nil {
		t.Fatal(err)
	}
	for id, r := range parsed.Resources {
		if r.Type == "AWS::Lambda::Function" && strings.HasPrefix(id, prefix) {
			return r.Properties.Environment.Variables
		}
	}
	t.Fatalf("no function %s* in the stack", prefix)
	return nil
}

func TestRuleInputCarriesIntervals(t *testing.T) {
	tests := []struct {
		hc   HealthCheck
		want map[string]any
	}{
		{HealthCheck{ConfirmInterval: 2 * time.Second, CheckInterval: 10 * time.Second}, map[string]any{"ConfirmInterval": "2s", "CheckInterval": "10s"}},
		{HealthCheck{DisableConfirmation: true}, map[string]any{"ConfirmInterval": "0s"}},
	}
	for _, tt := range tests {
		in := MonitoredService{ID: "a", HealthCheck: tt.hc}.ruleInput("https://x/health")
		for k, v := range tt.want {
			if in[k] != v {
				t.Errorf("ruleInput(%+v)[%s] = %v, want %v", tt.hc, k, in[k], v)
			}
		}
		if len(in) != 2+len(tt.want) {
			t.Errorf("ruleInput(%+v) = %v: keys beyond ID, URL and %v", tt.hc, in, tt.want)
		}
	}
}

// TestUpdaterTimeoutFollowsSettings synthesizes the updater with several
// services and reads its timeout: the longest invocation of any service,
// under a minute.
func TestUpdaterTimeoutFollowsSettings(t *testing.T) {
	tests := []struct {
		name     string
		services []MonitoredService
		want     float64
	}{
		{"defaults", nil, 27},
		{"no confirmation", []MonitoredService{{ID: "a", HealthCheck: HealthCheck{DisableConfirmation: true}}}, 7},
		{"longest service", []MonitoredService{{ID: "a", HealthCheck: HealthCheck{DisableConfirmation: true}}, {ID: "b", HealthCheck: HealthCheck{Timeout: 10 * time.Second}}}, 45},
		{"check interval", []MonitoredService{{ID: "a"}, {ID: "b", HealthCheck: HealthCheck{CheckInterval: 10 * time.Second}}}, 57},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
			st := awscdk.NewStack(app, jsii.String("S"), nil)
			cb := NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{Services: tt.services})
			tpl, _ := json.Marshal(assertions.Template_FromStack(st, nil).ToJSON())
			var parsed struct {
				Resources map[string]struct {
					Properties struct{ Timeout float64 }
				}
			}
			if err := json.Unmarshal(tpl, &parsed); err != nil {
				t.Fatal(err)
			}
			id := *st.GetLogicalId(cb.Updater().Node().DefaultChild().(awscdk.CfnElement))
			if got := parsed.Resources[id].Properties.Timeout; got != tt.want {
				t.Errorf("updater timeout %vs, want %vs", got, tt.want)
			}
		})
	}
}

func TestAttachToSetsPoliciesOfAttachedServices(t *testing.T) {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
	st := awscdk.NewStack(app, jsii.String("S"), nil)
	cb := NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{
		Services: []MonitoredService{
			{ID: "orders", Passive: PassiveDetection{FailureRateThreshold: 25, Window: time.Minute}, Breaker: BreakerSettings{SuccessThreshold: 3}},
			{ID: "payments", Passive: PassiveDetection{MinimumCalls: 50}},
			{ID: "plain"},
		},
	})
	fn := awslambda.NewFunction(st, jsii.String("Fn"), &awslambda.FunctionProps{
		Runtime: awslambda.Runtime_NODEJS_22_X(),
		Handler: jsii.String("index.handler"),
		Code:    awslambda.Code_FromInline(jsii.String("exports.handler = async () => 1")),
	})
	cb.AttachTo(fn, "orders", "plain")
	got, _ := functionEnv(t, st, "Fn")["CIRCUIT_BREAKER_POLICIES"].(string)
	want := `{"orders":{"failureRateThreshold":25,"window":"1m0s","successThreshold":3}}`
	if got != want {
		t.Fatalf("CIRCUIT_BREAKER_POLICIES = %s, want %s (only attached services with settings)", got, want)
	}
}
