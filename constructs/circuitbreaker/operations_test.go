package circuitbreaker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
)

// stackResources synthesizes st and returns its resources of type typ by
// logical ID, as generic JSON.
func stackResources(t *testing.T, st awscdk.Stack, typ string) map[string]map[string]any {
	t.Helper()
	data, err := json.Marshal(assertions.Template_FromStack(st, nil).ToJSON())
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct{ Resources map[string]map[string]any }
	if err := json.Unmarshal(data, &tpl); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for id, r := range tpl.Resources {
		if r["Type"] == typ {
			out[id], _ = r["Properties"].(map[string]any)
		}
	}
	return out
}

// newTestStack returns a stack whose assets are not bundled.
func newTestStack() awscdk.Stack {
	app := awscdk.NewApp(&awscdk.AppProps{Context: &map[string]interface{}{"aws:cdk:bundling-stacks": []interface{}{}}})
	return awscdk.NewStack(app, jsii.String("S"), nil)
}

// Two breakers in one stack that monitor the same service ID have their
// own tables, and their alarms and dashboards read only their own table's
// metrics.
func TestTwoBreakersWithTheSameServiceHaveDisjointMetrics(t *testing.T) {
	st := newTestStack()
	for _, id := range []string{"AppA", "AppB"} {
		NewCircuitBreakedService(st, id, &CircuitBreakedServiceProps{
			DisableMockAPI: true,
			Services:       []MonitoredService{{ID: "payments", URL: "https://payments.example.com/health"}},
		})
	}
	alarms := stackResources(t, st, "AWS::CloudWatch::Alarm")
	if len(alarms) != 2 {
		t.Fatalf("%d alarms, want one per breaker", len(alarms))
	}
	tables := map[string]bool{}
	for id, p := range alarms {
		dims, _ := json.Marshal(p["Dimensions"])
		var parsed []struct {
			Name  string
			Value any
		}
		if err := json.Unmarshal(dims, &parsed); err != nil {
			t.Fatal(err)
		}
		if len(parsed) != 2 || parsed[0].Name != "ServiceId" || parsed[0].Value != "payments" || parsed[1].Name != "Table" {
			t.Fatalf("%s: dimensions %s, want ServiceId and Table", id, dims)
		}
		ref, _ := json.Marshal(parsed[1].Value)
		tables[string(ref)] = true
		prefix := id[:4] // AppA or AppB
		if !strings.Contains(string(ref), `"`+prefix) {
			t.Errorf("%s: Table dimension %s is not its own breaker's table", id, ref)
		}
	}
	if len(tables) != 2 {
		t.Errorf("both alarms read the table %v: their metrics mix", tables)
	}
	dashboards := stackResources(t, st, "AWS::CloudWatch::Dashboard")
	if len(dashboards) != 2 {
		t.Fatalf("%d dashboards, want 2", len(dashboards))
	}
	for id, p := range dashboards {
		body, _ := json.Marshal(p["DashboardBody"])
		own, other := "AppA", "AppB"
		if strings.HasPrefix(id, "AppB") {
			own, other = other, own
		}
		// Every metric of a widget names its table: one reference per
		// metric, all to the breaker's own table.
		metrics := strings.Count(string(body), `\"LambdaCircuitBreaker\"`)
		withTable := strings.Count(string(body), `\"Table\",\"",{"Ref":"`+own+`Table`)
		if metrics == 0 || withTable != metrics || strings.Contains(string(body), `"Ref":"`+other+`Table`) {
			t.Errorf("%s: %d metrics, %d of them on its own table, or some on the other breaker's: %s", id, metrics, withTable, body)
		}
	}
}

// An OPEN alarm holds while the circuit is OPEN whatever the schedule: with
// checks every 5 minutes, the minutes between them have no data, and missing
// data must neither clear nor flip the alarm.
func TestOpenAlarmHoldsBetweenSparseChecks(t *testing.T) {
	st := newTestStack()
	NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{
		DisableMockAPI: true,
		Services: []MonitoredService{
			{ID: "every-minute", URL: "https://a.example.com/health"},
			{ID: "five-minutes", URL: "https://b.example.com/health", Schedule: rate("cron(0/5 * * * ? *)")},
			{ID: "hourly", URL: "https://c.example.com/health", Schedule: rate("rate(1 hour)")},
		},
	})
	alarms := stackResources(t, st, "AWS::CloudWatch::Alarm")
	if len(alarms) != 3 {
		t.Fatalf("%d alarms, want 3", len(alarms))
	}
	for id, p := range alarms {
		if p["TreatMissingData"] != "ignore" || p["MetricName"] != "CircuitOpen" || p["Statistic"] != "Maximum" ||
			p["Threshold"] != 1.0 || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" || p["EvaluationPeriods"] != 1.0 {
			t.Errorf("%s: alarm %v, want ALARM at CircuitOpen ≥ 1 with missing data ignored (the last state holds)", id, p)
		}
	}
}

// Metric gives any of the breaker's metrics with the named methods'
// dimensions; the named ones are Metric with their own statistic, and
// opts override any field.
func TestMetric(t *testing.T) {
	st := newTestStack()
	cb := NewCircuitBreakedService(st, "CB", nil)
	tests := []struct {
		name              string
		m                 awscloudwatch.Metric
		metric, statistic string
		period            float64
	}{
		{"generic", cb.Metric("CacheHits", "mock-api", nil), "CacheHits", "Average", 60},
		{"generic with options", cb.Metric("StaleAnswers", "mock-api", &awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: awscdk.Duration_Minutes(jsii.Number(5))}), "StaleAnswers", "Sum", 300},
		{"named", cb.MetricCallsRefused("mock-api", nil), "CallsRefused", "Sum", 60},
		{"named with options", cb.MetricHealthCheckLatency("mock-api", &awscloudwatch.MetricOptions{Statistic: jsii.String("p50")}), "HealthCheckLatency", "p50", 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := *tt.m.MetricName(); got != tt.metric {
				t.Errorf("name %s, want %s", got, tt.metric)
			}
			if got := *tt.m.Statistic(); got != tt.statistic {
				t.Errorf("statistic %s, want %s", got, tt.statistic)
			}
			if got := *tt.m.Period().ToSeconds(nil); got != tt.period {
				t.Errorf("period %vs, want %vs", got, tt.period)
			}
			if got := *tt.m.Namespace(); got != "LambdaCircuitBreaker" {
				t.Errorf("namespace %s", got)
			}
			dims := *tt.m.Dimensions()
			if dims["ServiceId"] != "mock-api" || dims["Table"] == nil {
				t.Errorf("dimensions %v, want ServiceId mock-api and Table", dims)
			}
		})
	}
	if msg := mustPanic(t, func() { cb.Metric("", "mock-api", nil) }); !strings.HasPrefix(msg, "circuitbreaker: Metric") {
		t.Errorf("Metric without a name: panic %q", msg)
	}
}

// OnStateChange matches the state-change events of this breaker's
// services on its bus and sends them to the target; without events it
// panics.
func TestOnStateChange(t *testing.T) {
	st := newTestStack()
	bus := awsevents.NewEventBus(st, jsii.String("Bus"), nil)
	cb := NewCircuitBreakedService(st, "CB", &CircuitBreakedServiceProps{
		EventBus: bus,
		Services: []MonitoredService{{ID: "orders"}, {ID: "payments"}},
	})
	queue := awssqs.NewQueue(st, jsii.String("Subscriber"), nil)
	rule := cb.OnStateChange("StateChanges", awseventstargets.NewSqsQueue(queue, nil))
	if got := *rule.Node().Path(); got != "S/CB/StateChanges" {
		t.Errorf("rule path %s", got)
	}
	template := assertions.Template_FromStack(st, nil)
	assertTemplate(t, func() {
		template.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{
			"EventBusName": map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^Bus"))},
			"EventPattern": map[string]any{
				"source":      []any{EventSource},
				"detail-type": []any{EventDetailStateChanged},
				"detail":      map[string]any{"serviceId": []any{"orders", "payments"}},
			},
			"Targets": assertions.Match_ArrayWith(&[]any{assertions.Match_ObjectLike(&map[string]any{
				"Arn": map[string]any{"Fn::GetAtt": []any{assertions.Match_StringLikeRegexp(jsii.String("^Subscriber")), "Arn"}},
			})}),
		})
	})

	off := NewCircuitBreakedService(newTestStack(), "CB", &CircuitBreakedServiceProps{DisableEvents: true})
	if msg := mustPanic(t, func() { off.OnStateChange("X", nil) }); !strings.Contains(msg, "DisableEvents is set") {
		t.Errorf("OnStateChange without events: panic %q", msg)
	}
}

// assertTemplate turns an assertions failure, which panics through jsii,
// into a test failure.
func assertTemplate(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("template assertion: %v", r)
		}
	}()
	f()
}
