package circuitbreaker

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// DefaultServiceID is the circuit monitored when no Services are given: the
// mock API.
const DefaultServiceID = "mock-api"

// Environment variables the construct sets on the functions it serves.
const (
	EnvTable           = api.EnvTable
	EnvServices        = api.EnvServices
	EnvPort            = api.EnvPort
	EnvRefreshInterval = api.EnvRefreshInterval
	EnvMaxStaleness    = api.EnvMaxStaleness
	EnvMaxAge          = api.EnvMaxAge
	EnvFailMode        = api.EnvFailMode
	EnvPolicies        = api.EnvPolicies
)

// TimeToLiveAttribute is the table attribute DynamoDB's TTL reads.
const TimeToLiveAttribute = store.TTLAttribute

// CircuitBreakedService is a circuit breaker for AWS Lambda: the state
// table, the extension layer, the updater and its rules, and optionally a
// mock API. Its accessors expose the resources so users can extend them.
type CircuitBreakedService interface {
	constructs.Construct
	// Table is the state table, one item per circuit.
	Table() awsdynamodb.ITable
	// ExtensionLayer is the extension layer for the construct's
	// architecture.
	ExtensionLayer() awslambda.LayerVersion
	// LayerFor returns the extension layer for arch, creating it on first
	// use.
	LayerFor(arch awslambda.Architecture) awslambda.LayerVersion
	// Updater is the function that health-checks services and moves their
	// circuits.
	Updater() awslambda.Function
	// MockAPI is the mock REST API, or nil when it is disabled.
	MockAPI() awsapigateway.RestApi
	// Rules maps each monitored service ID to its EventBridge rule.
	Rules() map[string]awsevents.Rule
	// DeadLetterQueue holds rule events the updater could not take.
	DeadLetterQueue() awssqs.Queue
	// ServiceIDs lists the monitored service IDs in the order given.
	ServiceIDs() []string
	// AttachTo lets fn use the breaker for the given services (all
	// monitored services when none are given): it adds the extension layer
	// matching fn's architecture, the extension's environment variables,
	// read access to the table, and UpdateItem limited by a
	// dynamodb:LeadingKeys condition to those services' circuit, outcome
	// bucket and probe lease items; on circuit items and their read
	// copies a dynamodb:Attributes condition allows only the state
	// machine's attributes (store.ExtensionWritableAttributes): the
	// function's code cannot undo an operator's override, nor set any
	// other attribute. It works alike for on-demand, provisioned-concurrency,
	// SnapStart and Managed Instances functions. It panics, as the
	// constructor does, for a service ID that is not monitored and for a
	// function attached twice.
	AttachTo(fn awslambda.Function, serviceIDs ...string)
	// OnStateChange creates an EventBridge rule, with construct ID id in
	// this construct, that matches the "Circuit State Changed" events of
	// the monitored services on the breaker's event bus, and sends them to
	// target (none when target is nil; add targets to the returned rule).
	// It panics when DisableEvents is set.
	OnStateChange(id string, target awsevents.IRuleTarget) awsevents.Rule
	// GrantRead lets grantee read circuits (GetItem and BatchGetItem, no
	// Scan or Query).
	GrantRead(grantee awsiam.IGrantable) awsiam.Grant
	// GrantOperate lets grantee, such as an operators' role, run circuitctl
	// on the monitored services: UpdateItem limited by a
	// dynamodb:LeadingKeys condition to their circuit items "<id>" and
	// read copies "<id>#r#*", and GetItem and BatchGetItem to those and to
	// the override items "<id>#override" of earlier versions (read until
	// migrated).
	GrantOperate(grantee awsiam.IGrantable) awsiam.Grant
	// EventsFunction publishes state-change events, or nil when events are
	// disabled.
	EventsFunction() awslambda.Function
	// Alarms maps each service ID to its OPEN alarm; empty when alarms are
	// disabled.
	Alarms() map[string]awscloudwatch.Alarm
	// Dashboard is the breaker's dashboard, or nil when disabled.
	Dashboard() awscloudwatch.Dashboard
	// Metric returns the breaker's metric name (one of the names in the
	// metrics table of docs/operations.md, such as "CacheHits") for
	// serviceID, with the dimensions Table and ServiceId: the average per
	// minute unless opts (which may be nil) says otherwise. The named
	// metric methods below are this with their own statistic.
	Metric(name, serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric
	// MetricCircuitOpen is 1 while the circuit is OPEN (maximum per minute).
	MetricCircuitOpen(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric
	// MetricCircuitState is the circuit's state: 0 CLOSED, 1 HALF_OPEN,
	// 2 OPEN (maximum per minute).
	MetricCircuitState(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric
	// MetricHealthCheckLatency is the updater's check latency in
	// milliseconds (p99 per minute).
	MetricHealthCheckLatency(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric
	// MetricCallsRefused counts calls the extension refused (sum per
	// minute).
	MetricCallsRefused(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric
}

type circuitBreakedService struct {
	constructs.Construct
	props     CircuitBreakedServiceProps
	services  []MonitoredService
	table     awsdynamodb.ITable
	layers    map[string]awslambda.LayerVersion
	updater   awslambda.Function
	mockAPI   awsapigateway.RestApi
	rules     map[string]awsevents.Rule
	dlq       awssqs.Queue
	attached  map[string][]string
	events    awslambda.Function
	alarms    map[string]awscloudwatch.Alarm
	dashboard awscloudwatch.Dashboard
}

// NewCircuitBreakedService creates the breaker. It panics with one message
// that names every problem of invalid props, as CDK constructs do (see
// the package documentation on errors).
func NewCircuitBreakedService(scope constructs.Construct, id string, props *CircuitBreakedServiceProps) CircuitBreakedService {
	if props == nil {
		props = &CircuitBreakedServiceProps{}
	}
	services, err := props.validate()
	if err != nil {
		panic(err.Error())
	}
	if props.Architecture == nil {
		props.Architecture = awslambda.Architecture_ARM_64()
	}
	this := constructs.NewConstruct(scope, &id)
	s := &circuitBreakedService{
		Construct: this,
		props:     *props,
		services:  services,
		layers:    map[string]awslambda.LayerVersion{},
		rules:     map[string]awsevents.Rule{},
		attached:  map[string][]string{},
		alarms:    map[string]awscloudwatch.Alarm{},
	}
	s.table = props.Table
	if s.table == nil {
		s.table = newTable(this, props.TableRemovalPolicy)
	}
	s.LayerFor(props.Architecture)
	s.updater = s.newUpdater()
	if !props.DisableMockAPI {
		s.mockAPI = newMockAPI(this, "MockApi", props.MockAPIAccountLogging)
	}
	s.dlq = awssqs.NewQueue(this, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		EnforceSSL:      jsii.Bool(true),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	suppress(s.dlq, "AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the monitoring rules and of the change-events stream.")
	for _, svc := range services {
		s.rules[svc.ID] = s.newRule(svc)
		if !props.DisableAlarms {
			s.alarms[svc.ID] = s.newAlarm(svc.ID)
		}
	}
	if !props.DisableEvents {
		s.events = s.newEventsFunction()
	}
	if !props.DisableDashboard {
		s.dashboard = s.newDashboard()
	}
	return s
}

func newTable(scope constructs.Construct, removal awscdk.RemovalPolicy) awsdynamodb.Table {
	if removal == "" {
		removal = awscdk.RemovalPolicy_RETAIN
	}
	return awsdynamodb.NewTable(scope, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("id"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		Encryption:   awsdynamodb.TableEncryption_AWS_MANAGED,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		TimeToLiveAttribute: jsii.String(TimeToLiveAttribute),
		Stream:              awsdynamodb.StreamViewType_NEW_AND_OLD_IMAGES,
		RemovalPolicy:       removal,
	})
}

func (s *circuitBreakedService) LayerFor(arch awslambda.Architecture) awslambda.LayerVersion {
	ga := goarch(arch)
	if ga == "" {
		panic(fmt.Sprintf("circuitbreaker: unsupported architecture %s (want ARM_64 or X86_64)", *arch.Name()))
	}
	if l, ok := s.layers[ga]; ok {
		return l
	}
	id := "ExtensionLayer"
	if ga != goarch(s.props.Architecture) {
		id = "ExtensionLayer-" + ga
	}
	l := awslambda.NewLayerVersion(s.Construct, jsii.String(id), &awslambda.LayerVersionProps{
		Code:                    goCode(s.Construct, ExtensionPackage, arch, "extensions/"+ExtensionName),
		CompatibleArchitectures: &[]awslambda.Architecture{arch},
		Description:             jsii.String("Circuit-breaker extension (" + ga + "): answers on 127.0.0.1 whether a monitored service may be called"),
		License:                 jsii.String("MIT-0"),
	})
	s.layers[ga] = l
	return l
}

func (s *circuitBreakedService) newUpdater() awslambda.Function {
	env := map[string]string{EnvTable: *s.table.TableName()}
	if s.props.AllowLocalHealthCheckTargets {
		env[updater.EnvAllowLocalTargets] = "true"
	}
	fn := NewGoFunction(s.Construct, "Updater", &GoFunctionProps{
		Package:      UpdaterPackage,
		Architecture: s.props.Architecture,
		Description:  "Health-checks a monitored service and moves its circuit",
		// The longest invocation of any service (its checks, confirmations
		// and writes), plus a slack; always under a minute.
		Timeout:     awscdk.Duration_Seconds(jsii.Number(updaterTimeout(s.services).Seconds())),
		Environment: env,
	})
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("ReadCircuits"),
		Actions:    jsii.Strings("dynamodb:GetItem", "dynamodb:BatchGetItem"),
		Resources:  jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]interface{}{"ForAllValues:StringLike": map[string]interface{}{"dynamodb:LeadingKeys": s.readKeys()}},
	}))
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("TransitionCircuits"),
		Actions:    jsii.Strings("dynamodb:UpdateItem"),
		Resources:  jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]interface{}{"ForAllValues:StringLike": map[string]interface{}{"dynamodb:LeadingKeys": s.circuitKeys()}},
	}))
	return fn
}

// circuitKeys are the circuit item keys of the monitored services and
// the patterns of their read copies. The updater's and operators' grants
// name them in a dynamodb:LeadingKeys condition, so a crafted updater
// input or an operator's typo cannot reach any other key.
func (s *circuitBreakedService) circuitKeys() []string {
	var keys []string
	for _, svc := range s.services {
		keys = append(keys, svc.ID, svc.ID+store.CopyInfix+"*")
	}
	return keys
}

// readKeys are circuitKeys and the legacy override item keys
// "<id>#override", which the updater and circuitctl read (never write)
// while a circuit's override has not been moved into its circuit item.
func (s *circuitBreakedService) readKeys() []string {
	var keys []string
	for _, svc := range s.services {
		keys = append(keys, svc.ID, store.OverrideKey(svc.ID), svc.ID+store.CopyInfix+"*")
	}
	return keys
}

func (s *circuitBreakedService) newRule(svc MonitoredService) awsevents.Rule {
	target := svc.URL
	if target == "" {
		target = *s.mockAPI.UrlForPath(jsii.String(MockHealthPath))
	}
	rule := awsevents.NewRule(s.Construct, jsii.String("Monitor-"+svc.ID), &awsevents.RuleProps{
		Description: jsii.String("Health-checks service " + svc.ID + " and moves its circuit"),
		Schedule:    svc.Schedule,
	})
	rule.AddTarget(awseventstargets.NewLambdaFunction(s.updater, &awseventstargets.LambdaFunctionProps{
		Event:           awsevents.RuleTargetInput_FromObject(svc.ruleInput(target)),
		RetryAttempts:   jsii.Number(2),
		MaxEventAge:     awscdk.Duration_Minutes(jsii.Number(2)),
		DeadLetterQueue: s.dlq,
	}))
	return rule
}

func (s *circuitBreakedService) AttachTo(fn awslambda.Function, serviceIDs ...string) {
	if len(serviceIDs) == 0 {
		serviceIDs = s.ServiceIDs()
	}
	known := map[string]bool{}
	for _, svc := range s.services {
		known[svc.ID] = true
	}
	for _, id := range serviceIDs {
		if !known[id] {
			panic(fmt.Sprintf("circuitbreaker: AttachTo %s: service %q is not monitored (monitored: %s)", *fn.Node().Path(), id, strings.Join(s.ServiceIDs(), ", ")))
		}
	}
	path := *fn.Node().Path()
	if _, done := s.attached[path]; done {
		panic(fmt.Sprintf("circuitbreaker: AttachTo %s: already attached", path))
	}
	s.attached[path] = serviceIDs
	fn.AddLayers(s.LayerFor(fn.Architecture()))
	env := map[string]string{
		EnvTable:    *s.table.TableName(),
		EnvServices: strings.Join(serviceIDs, ","),
	}
	maps.Copy(env, s.props.Extension.Env())
	policies := policy.Policies{}
	for _, svc := range s.services {
		if slices.Contains(serviceIDs, svc.ID) && svc.policy() != (policy.Policy{}) {
			policies[svc.ID] = svc.policy()
		}
	}
	if len(policies) > 0 {
		env[EnvPolicies] = policies.String()
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fn.AddEnvironment(jsii.String(k), jsii.String(env[k]), nil)
	}
	s.GrantRead(fn)
	s.grantReport(fn, serviceIDs)
}

// grantReport lets grantee record call outcomes and probe leases, and move
// the circuits, of the given services only, enforced with
// dynamodb:LeadingKeys conditions: UpdateItem on their counter buckets and
// lease slots, and, in a second statement, UpdateItem on their circuit
// items and read copies that names only attributes of
// store.ExtensionWritableAttributes (the state machine's: never the
// operator override, nor any other) and returns no whole item.
func (s *circuitBreakedService) grantReport(grantee awsiam.IGrantable, serviceIDs []string) awsiam.Grant {
	var outcomes, circuits []string
	for _, id := range serviceIDs {
		outcomes = append(outcomes, id+store.BucketInfix+"*", id+store.LeaseInfix+"*")
		circuits = append(circuits, id, id+store.CopyInfix+"*")
	}
	g := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("dynamodb:UpdateItem"),
		ResourceArns: jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]*map[string]interface{}{
			"ForAllValues:StringLike": {"dynamodb:LeadingKeys": outcomes},
		},
	})
	return g.Combine(awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("dynamodb:UpdateItem"),
		ResourceArns: jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]*map[string]interface{}{
			"ForAllValues:StringLike":   {"dynamodb:LeadingKeys": circuits},
			"ForAllValues:StringEquals": {"dynamodb:Attributes": store.ExtensionWritableAttributes},
			"StringEqualsIfExists":      {"dynamodb:ReturnValues": []string{"NONE", "UPDATED_OLD", "UPDATED_NEW"}},
		},
	}))
}

func (s *circuitBreakedService) GrantOperate(grantee awsiam.IGrantable) awsiam.Grant {
	g := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("dynamodb:GetItem", "dynamodb:BatchGetItem"),
		ResourceArns: jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]*map[string]interface{}{
			"ForAllValues:StringLike": {"dynamodb:LeadingKeys": s.readKeys()},
		},
	})
	return g.Combine(awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("dynamodb:UpdateItem"),
		ResourceArns: jsii.Strings(*s.table.TableArn()),
		Conditions: &map[string]*map[string]interface{}{
			"ForAllValues:StringLike": {"dynamodb:LeadingKeys": s.circuitKeys()},
		},
	}))
}

func (s *circuitBreakedService) GrantRead(grantee awsiam.IGrantable) awsiam.Grant {
	return awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("dynamodb:GetItem", "dynamodb:BatchGetItem"),
		ResourceArns: jsii.Strings(*s.table.TableArn()),
	})
}

func (s *circuitBreakedService) Table() awsdynamodb.ITable          { return s.table }
func (s *circuitBreakedService) EventsFunction() awslambda.Function { return s.events }
func (s *circuitBreakedService) Dashboard() awscloudwatch.Dashboard { return s.dashboard }
func (s *circuitBreakedService) Alarms() map[string]awscloudwatch.Alarm {
	return maps.Clone(s.alarms)
}
func (s *circuitBreakedService) ExtensionLayer() awslambda.LayerVersion {
	return s.layers[goarch(s.props.Architecture)]
}
func (s *circuitBreakedService) Updater() awslambda.Function    { return s.updater }
func (s *circuitBreakedService) MockAPI() awsapigateway.RestApi { return s.mockAPI }
func (s *circuitBreakedService) DeadLetterQueue() awssqs.Queue  { return s.dlq }
func (s *circuitBreakedService) Rules() map[string]awsevents.Rule {
	return maps.Clone(s.rules)
}
func (s *circuitBreakedService) ServiceIDs() []string {
	ids := make([]string, len(s.services))
	for i, svc := range s.services {
		ids[i] = svc.ID
	}
	return ids
}

// logGroup creates the log group of a function, with a retention.
func logGroup(scope constructs.Construct, id string) awslogs.LogGroup {
	return awslogs.NewLogGroup(scope, jsii.String(id), &awslogs.LogGroupProps{
		Retention:     awslogs.RetentionDays_ONE_MONTH,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}
