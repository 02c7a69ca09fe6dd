package test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/infra/stack"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

func TestTableSettings(t *testing.T) {
	_, st := appStack(t, false)
	tpl := template(t, st)
	tables := resources(tpl, "AWS::DynamoDB::Table")
	if len(tables) != 1 {
		t.Fatalf("%d tables, want 1", len(tables))
	}
	for id, res := range tables {
		p := props(res)
		if res["DeletionPolicy"] != "Retain" || res["UpdateReplacePolicy"] != "Retain" {
			t.Errorf("%s: deletion policy %v / %v, want Retain by default", id, res["DeletionPolicy"], res["UpdateReplacePolicy"])
		}
		if p["BillingMode"] != "PAY_PER_REQUEST" {
			t.Errorf("%s: BillingMode = %v", id, p["BillingMode"])
		}
		ks, _ := json.Marshal(p["KeySchema"])
		if string(ks) != `[{"AttributeName":"id","KeyType":"HASH"}]` {
			t.Errorf("%s: KeySchema = %s", id, ks)
		}
		ad, _ := json.Marshal(p["AttributeDefinitions"])
		if string(ad) != `[{"AttributeName":"id","AttributeType":"S"}]` {
			t.Errorf("%s: AttributeDefinitions = %s", id, ad)
		}
		if pitr, _ := json.Marshal(p["PointInTimeRecoverySpecification"]); !strings.Contains(string(pitr), `"PointInTimeRecoveryEnabled":true`) {
			t.Errorf("%s: point-in-time recovery off: %s", id, pitr)
		}
		if sse, _ := json.Marshal(p["SSESpecification"]); !strings.Contains(string(sse), `"SSEEnabled":true`) {
			t.Errorf("%s: encryption not explicit: %s", id, sse)
		}
		if ttl, _ := json.Marshal(p["TimeToLiveSpecification"]); string(ttl) != `{"AttributeName":"expiresAt","Enabled":true}` {
			t.Errorf("%s: TTL = %s", id, ttl)
		}
	}
}

func TestFunctionsRuntimeAndArchitecture(t *testing.T) {
	_, st := appStack(t, false)
	fns := resources(template(t, st), "AWS::Lambda::Function")
	if len(fns) != 3 {
		t.Fatalf("%d functions, want the updater, the change-events function and MyMicroservice", len(fns))
	}
	var sawUpdater, sawMicro bool
	for id, res := range fns {
		p := props(res)
		if p["Runtime"] != "provided.al2023" || p["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v handler %v, want provided.al2023 / bootstrap", id, p["Runtime"], p["Handler"])
		}
		if a, _ := json.Marshal(p["Architectures"]); string(a) != `["arm64"]` {
			t.Errorf("%s: architectures %s, want [arm64]", id, a)
		}
		env, _ := json.Marshal(p["Environment"])
		if !strings.HasPrefix(id, "CircuitBreakerChangeEvents") && !strings.Contains(string(env), "CIRCUIT_BREAKER_TABLE") {
			t.Errorf("%s: no CIRCUIT_BREAKER_TABLE in %s", id, env)
		}
		switch {
		case strings.HasPrefix(id, "CircuitBreakerUpdater"):
			sawUpdater = true
			if p["Layers"] != nil {
				t.Errorf("updater has layers %v; it does not use the extension", p["Layers"])
			}
		case strings.HasPrefix(id, "MyMicroservice"):
			sawMicro = true
			layers, _ := json.Marshal(p["Layers"])
			if !strings.Contains(string(layers), "CircuitBreakerExtensionLayer") {
				t.Errorf("MyMicroservice layers %s lack the extension layer", layers)
			}
			for _, want := range []string{`"CIRCUIT_BREAKER_SERVICES":"mock-api"`, `"SERVICE_ID":"mock-api"`, `"API_URL"`} {
				if !strings.Contains(string(env), want) {
					t.Errorf("MyMicroservice environment lacks %s: %s", want, env)
				}
			}
		}
	}
	if !sawUpdater || !sawMicro {
		t.Errorf("updater found: %v, MyMicroservice found: %v", sawUpdater, sawMicro)
	}
}

func TestLayerIsForArm64(t *testing.T) {
	_, st := appStack(t, false)
	for id, res := range resources(template(t, st), "AWS::Lambda::LayerVersion") {
		if a, _ := json.Marshal(props(res)["CompatibleArchitectures"]); string(a) != `["arm64"]` {
			t.Errorf("%s: CompatibleArchitectures %s", id, a)
		}
	}
}

func TestOneRulePerServiceWithInputRetriesAndDLQ(t *testing.T) {
	_, st := appStack(t, false)
	rules := resources(template(t, st), "AWS::Events::Rule")
	if len(rules) != 1 {
		t.Fatalf("%d rules, want 1 (one monitored service in infra/services.json)", len(rules))
	}
	for id, res := range rules {
		p := props(res)
		if p["ScheduleExpression"] != "rate(1 minute)" {
			t.Errorf("%s: schedule %v", id, p["ScheduleExpression"])
		}
		targets := p["Targets"].([]interface{})
		if len(targets) != 1 {
			t.Fatalf("%s: %d targets", id, len(targets))
		}
		tg := targets[0].(map[string]interface{})
		in, _ := json.Marshal(tg["Input"])
		for _, want := range []string{`{\"ID\":\"mock-api\",\"URL\":\"https://`, `/api/resource/health\"}`} {
			if !strings.Contains(string(in), want) {
				t.Errorf("%s: input %s lacks %s", id, in, want)
			}
		}
		if tg["DeadLetterConfig"] == nil {
			t.Errorf("%s: no dead-letter queue", id)
		}
		if rp, _ := json.Marshal(tg["RetryPolicy"]); string(rp) != `{"MaximumEventAgeInSeconds":120,"MaximumRetryAttempts":2}` {
			t.Errorf("%s: retry policy %s", id, rp)
		}
	}
}

func TestMockAPISwitchAndPaths(t *testing.T) {
	_, st := appStack(t, false)
	tpl := template(t, st)
	stages := resources(tpl, "AWS::ApiGateway::Stage")
	for id, res := range stages {
		if v, _ := json.Marshal(props(res)["Variables"]); string(v) != `{"mode":"healthy"}` {
			t.Errorf("%s: stage variables %s, want mode=healthy", id, v)
		}
	}
	methods := resources(tpl, "AWS::ApiGateway::Method")
	if len(methods) != 2 {
		t.Fatalf("%d methods, want GET /api/resource and GET /api/resource/health", len(methods))
	}
	for id, res := range methods {
		integ, _ := json.Marshal(props(res)["Integration"])
		for _, want := range []string{`"Type":"MOCK"`, `$stageVariables.mode == \"failing\"`, `"SelectionPattern":"503"`} {
			if !strings.Contains(string(integ), want) {
				t.Errorf("%s: integration lacks %s: %s", id, want, integ)
			}
		}
	}
}

// wantCircuitCondition is the condition of the attached function's
// UpdateItem on its circuit item: its own key, only the attributes the
// extension writes, no whole item returned.
var wantCircuitCondition = func() string {
	attrs, _ := json.Marshal(store.ExtensionWritableAttributes)
	return `{"ForAllValues:StringEquals":{"dynamodb:Attributes":` + string(attrs) + `},"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["mock-api","mock-api#r#*"]},"StringEqualsIfExists":{"dynamodb:ReturnValues":["NONE","UPDATED_OLD","UPDATED_NEW"]}}`
}()

// TestIAMLeastPrivilege checks every policy statement: no wildcard action,
// no table-wide write for readers, no Scan anywhere.
func TestIAMLeastPrivilege(t *testing.T) {
	_, st := appStack(t, false)
	for id, res := range resources(template(t, st), "AWS::IAM::Policy") {
		doc := props(res)["PolicyDocument"].(map[string]interface{})
		for _, s := range doc["Statement"].([]interface{}) {
			stmt := s.(map[string]interface{})
			var actions []string
			switch a := stmt["Action"].(type) {
			case string:
				actions = []string{a}
			case []interface{}:
				for _, x := range a {
					actions = append(actions, x.(string))
				}
			}
			for _, a := range actions {
				if strings.Contains(a, "*") {
					t.Errorf("%s: wildcard action %s", id, a)
				}
				if a == "dynamodb:Scan" || a == "dynamodb:Query" || a == "dynamodb:PutItem" || a == "dynamodb:DeleteItem" || a == "dynamodb:BatchWriteItem" {
					t.Errorf("%s: %s is never needed", id, a)
				}
				if strings.HasPrefix(id, "MyMicroservice") && strings.HasPrefix(a, "dynamodb:") && a != "dynamodb:GetItem" && a != "dynamodb:BatchGetItem" {
					// The only writes: outcomes and leases of the attached
					// service's own keys, and its circuit item's state.
					cond, _ := json.Marshal(stmt["Condition"])
					if a != "dynamodb:UpdateItem" || (string(cond) != `{"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["mock-api#b#*","mock-api#lease#*"]}}` && string(cond) != wantCircuitCondition) {
						t.Errorf("%s: function has %s with condition %s", id, a, cond)
					}
				}
			}
		}
	}
}

// leadingKeys returns the dynamodb:LeadingKeys patterns of a statement's
// condition and the condition operator they sit under.
func leadingKeys(stmt map[string]interface{}) (op string, keys []string) {
	cond, _ := stmt["Condition"].(map[string]interface{})
	for o, v := range cond {
		m, _ := v.(map[string]interface{})
		switch k := m["dynamodb:LeadingKeys"].(type) {
		case string:
			return o, []string{k}
		case []interface{}:
			for _, x := range k {
				keys = append(keys, x.(string))
			}
			return o, keys
		}
	}
	return "", nil
}

// stringLike matches IAM's StringLike: '*' any run, '?' one character.
func stringLike(pattern, s string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(s)
}

// TestOverrideOutOfAttachedReach checks that the attached function may
// write its circuit item only with the attributes the extension writes
// (exactly store.ExtensionWritableAttributes, none of
// store.ProtectedAttributes: never the operator override), and no other
// service's or the legacy override item's key, while its own circuit,
// bucket and lease keys stay writable; and that the updater may write
// only the monitored circuit keys.
func TestOverrideOutOfAttachedReach(t *testing.T) {
	_, st := appStack(t, false)
	var attachedWrites, guarded, updaterWrites int
	var attachedKeys []string
	for id, res := range resources(template(t, st), "AWS::IAM::Policy") {
		doc := props(res)["PolicyDocument"].(map[string]interface{})
		for _, s := range doc["Statement"].([]interface{}) {
			stmt := s.(map[string]interface{})
			actions, _ := json.Marshal(stmt["Action"])
			if !strings.Contains(string(actions), "dynamodb:UpdateItem") {
				continue
			}
			op, keys := leadingKeys(stmt)
			switch {
			case strings.HasPrefix(id, "MyMicroservice"):
				attachedWrites++
				if op != "ForAllValues:StringLike" || len(keys) == 0 {
					t.Fatalf("%s: UpdateItem under %q %v: not limited by key", id, op, keys)
				}
				cond, _ := stmt["Condition"].(map[string]interface{})
				var allowed []string
				if m, ok := cond["ForAllValues:StringEquals"].(map[string]interface{}); ok {
					for _, a := range m["dynamodb:Attributes"].([]interface{}) {
						allowed = append(allowed, a.(string))
					}
				}
				if _, ok := cond["ForAllValues:StringNotEquals"]; ok {
					t.Errorf("%s: a deny list on attributes; want only the allow list", id)
				}
				for _, k := range keys {
					if stringLike(k, "mock-api#override") {
						t.Errorf("%s: key pattern %q lets the attached function write the override item", id, k)
					}
					if stringLike(k, "mock-api") || stringLike(k, "mock-api#r#1") {
						guarded++
						if !slices.Equal(allowed, store.ExtensionWritableAttributes) {
							t.Errorf("%s: circuit key %q writable with attributes %v; want exactly %v", id, k, allowed, store.ExtensionWritableAttributes)
						}
						for _, a := range store.ProtectedAttributes {
							if slices.Contains(allowed, a) {
								t.Errorf("%s: circuit key %q writable with protected attribute %q", id, k, a)
							}
						}
						rv, _ := json.Marshal(cond["StringEqualsIfExists"])
						if string(rv) != `{"dynamodb:ReturnValues":["NONE","UPDATED_OLD","UPDATED_NEW"]}` {
							t.Errorf("%s: circuit key writable with ReturnValues condition %s", id, rv)
						}
					}
				}
				attachedKeys = append(attachedKeys, keys...)
			case strings.HasPrefix(id, "CircuitBreakerUpdater"):
				updaterWrites++
				if op != "ForAllValues:StringLike" || strings.Join(keys, ",") != "mock-api,mock-api#r#*" {
					t.Errorf("%s: updater writes under %q %v; want exactly the monitored circuit key and its read copies", id, op, keys)
				}
			}
		}
	}
	for _, own := range []string{"mock-api", "mock-api#r#3", "mock-api#b#1700000000#31", "mock-api#lease#0"} {
		if !slices.ContainsFunc(attachedKeys, func(k string) bool { return stringLike(k, own) }) {
			t.Errorf("no key pattern covers %q: %v", own, attachedKeys)
		}
	}
	if attachedWrites != 2 || guarded != 2 || updaterWrites != 1 {
		t.Errorf("%d attached UpdateItem statements (%d patterns of circuit and copy keys) and %d updater ones, want 2 (2) and 1", attachedWrites, guarded, updaterWrites)
	}
	if !stringLike("mock-api#b#*", "mock-api#b#1") || stringLike("mock-api", "mock-api#override") {
		t.Error("stringLike does not match as IAM does")
	}
}

// TestGrantOperate checks the operators' grant: circuitctl's actions on
// the monitored circuit and override keys only, no Scan, Query or PutItem.
func TestGrantOperate(t *testing.T) {
	app := newApp(t, false)
	var tpl map[string]interface{}
	must(t, func() {
		st := awscdk.NewStack(app, jsii.String("Ops"), nil)
		cb := circuitbreaker.NewCircuitBreakedService(st, "CB", &circuitbreaker.CircuitBreakedServiceProps{
			Services: []circuitbreaker.MonitoredService{{ID: "orders", URL: "https://orders.example.com/health"}, {ID: "search", URL: "https://search.example.com/health"}},
		})
		role := awsiam.NewRole(st, jsii.String("Operators"), &awsiam.RoleProps{AssumedBy: awsiam.NewAccountRootPrincipal()})
		cb.GrantOperate(role)
		tpl = template(t, st)
	})
	var found bool
	for id, res := range resources(tpl, "AWS::IAM::Policy") {
		if !strings.HasPrefix(id, "Operators") {
			continue
		}
		found = true
		doc, _ := json.Marshal(props(res)["PolicyDocument"])
		for _, want := range []string{
			`"Action":["dynamodb:BatchGetItem","dynamodb:GetItem"],"Condition":{"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["orders","orders#override","orders#r#*","search","search#override","search#r#*"]}}`,
			`"Action":"dynamodb:UpdateItem","Condition":{"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["orders","orders#r#*","search","search#r#*"]}}`,
		} {
			if !strings.Contains(string(doc), want) {
				t.Errorf("%s: operators' policy %s\nlacks %s", id, doc, want)
			}
		}
	}
	if !found {
		t.Fatal("GrantOperate added no policy to the role")
	}
}

func TestOperations(t *testing.T) {
	_, st := appStack(t, false)
	tpl := template(t, st)

	alarms := resources(tpl, "AWS::CloudWatch::Alarm")
	if len(alarms) != 1 {
		t.Fatalf("%d alarms, want one per monitored service", len(alarms))
	}
	for id, res := range alarms {
		p := props(res)
		dims, _ := json.Marshal(p["Dimensions"])
		if p["MetricName"] != "CircuitOpen" || p["Namespace"] != "LambdaCircuitBreaker" || p["Statistic"] != "Maximum" ||
			p["Threshold"] != 1.0 || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" || p["TreatMissingData"] != "ignore" ||
			!strings.HasPrefix(string(dims), `[{"Name":"ServiceId","Value":"mock-api"},{"Name":"Table","Value":{"Ref":"CircuitBreakerTable`) {
			t.Errorf("%s: alarm %v", id, p)
		}
	}

	dashboards := resources(tpl, "AWS::CloudWatch::Dashboard")
	if len(dashboards) != 1 {
		t.Fatalf("%d dashboards, want 1", len(dashboards))
	}
	for _, res := range dashboards {
		body, _ := json.Marshal(props(res)["DashboardBody"])
		for _, want := range []string{"mock-api: state", "CircuitState", "HealthCheckLatency", "CallsRefused"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("dashboard body lacks %q", want)
			}
		}
	}

	for id, res := range resources(tpl, "AWS::DynamoDB::Table") {
		if sv, _ := json.Marshal(props(res)["StreamSpecification"]); string(sv) != `{"StreamViewType":"NEW_AND_OLD_IMAGES"}` {
			t.Errorf("%s: stream %s", id, sv)
		}
	}
	mappings := resources(tpl, "AWS::Lambda::EventSourceMapping")
	if len(mappings) != 1 {
		t.Fatalf("%d event source mappings, want the table stream", len(mappings))
	}
	for id, res := range mappings {
		p := props(res)
		m, _ := json.Marshal(p)
		for _, want := range []string{`"FunctionResponseTypes":["ReportBatchItemFailures"]`, `"BisectBatchOnFunctionError":true`, `HALF_OPEN`, `"DestinationConfig"`, `"StartingPosition":"LATEST"`} {
			if !strings.Contains(string(m), want) {
				t.Errorf("%s: mapping lacks %s: %s", id, want, m)
			}
		}
	}
	var putEvents bool
	for _, res := range resources(tpl, "AWS::IAM::Policy") {
		doc, _ := json.Marshal(props(res)["PolicyDocument"])
		if strings.Contains(string(doc), `"events:PutEvents"`) {
			putEvents = true
			if !strings.Contains(string(doc), `:event-bus/default`) {
				t.Errorf("PutEvents not scoped to the default bus: %s", doc)
			}
		}
	}
	if !putEvents {
		t.Error("no policy allows events:PutEvents")
	}
}

// TestUpdaterRefusesLocalTargetsByDefault checks the updater's switch for
// local addresses: off unless AllowLocalHealthCheckTargets asks for it.
func TestUpdaterRefusesLocalTargetsByDefault(t *testing.T) {
	for _, allow := range []bool{false, true} {
		app := newApp(t, false)
		var tpl map[string]interface{}
		must(t, func() {
			st := awscdk.NewStack(app, jsii.String("Local"), nil)
			circuitbreaker.NewCircuitBreakedService(st, "CB", &circuitbreaker.CircuitBreakedServiceProps{AllowLocalHealthCheckTargets: allow})
			tpl = template(t, st)
		})
		var seen bool
		for id, res := range resources(tpl, "AWS::Lambda::Function") {
			if !strings.HasPrefix(id, "CBUpdater") {
				continue
			}
			seen = true
			env, _ := json.Marshal(props(res)["Environment"])
			if got := strings.Contains(string(env), `"CIRCUIT_BREAKER_ALLOW_LOCAL_TARGETS":"true"`); got != allow {
				t.Errorf("AllowLocalHealthCheckTargets=%v: updater environment %s", allow, env)
			}
		}
		if !seen {
			t.Fatal("no updater function")
		}
	}
}

// The settings of infra/services.json, readCopies included, reach the
// updater's input through the app's stack.
func TestServicesFileSettingsReachTheRule(t *testing.T) {
	cfg, err := appconfig.Parse([]byte(`{"services":[{"id":"orders","url":"https://orders.example.com/health","failureThreshold":5,"readCopies":8}]}`))
	if err != nil {
		t.Fatal(err)
	}
	app := newApp(t, false)
	var st awscdk.Stack
	must(t, func() { st = stack.New(app, stack.Name, &stack.Props{Config: cfg}) })
	rules := resources(template(t, st), "AWS::Events::Rule")
	if len(rules) != 1 {
		t.Fatalf("%d rules, want 1", len(rules))
	}
	for id, res := range rules {
		tg := props(res)["Targets"].([]interface{})[0].(map[string]interface{})
		in, _ := json.Marshal(tg["Input"])
		for _, want := range []string{`\"FailureThreshold\":5`, `\"ReadCopies\":8`} {
			if !strings.Contains(string(in), want) {
				t.Errorf("%s: input %s lacks %s", id, in, want)
			}
		}
	}
}
