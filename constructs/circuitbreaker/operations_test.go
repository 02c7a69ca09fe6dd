package circuitbreaker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
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
