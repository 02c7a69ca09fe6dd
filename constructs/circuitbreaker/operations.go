package circuitbreaker

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/changeevents"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
)

// EventsPackage is the import path of the change-events function.
const EventsPackage = "github.com/circuitbreaked/lambda-circuit-breaker/functions/events"

// Event source and detail types on EventBridge.
const (
	EventSource                = changeevents.Source
	EventDetailStateChanged    = changeevents.DetailTypeStateChanged
	EventDetailOverrideChanged = changeevents.DetailTypeOverrideChanged
)

// newEventsFunction publishes the table stream's transitions to
// EventBridge.
func (s *circuitBreakedService) newEventsFunction() awslambda.Function {
	busName := "default"
	busArn := *awscdk.Stack_Of(s.Construct).FormatArn(&awscdk.ArnComponents{Service: jsii.String("events"), Resource: jsii.String("event-bus"), ResourceName: jsii.String("default")})
	if b := s.props.EventBus; b != nil {
		busName, busArn = *b.EventBusName(), *b.EventBusArn()
	}
	fn := NewGoFunction(s.Construct, "ChangeEvents", &GoFunctionProps{
		Package:      EventsPackage,
		Architecture: s.props.Architecture,
		Description:  "Puts one EventBridge event per circuit transition and override change, from the state table's stream",
		Timeout:      awscdk.Duration_Seconds(jsii.Number(30)),
		Environment:  map[string]string{"CIRCUIT_BREAKER_EVENT_BUS": busName},
	})
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("PutChangeEvents"),
		Actions:   jsii.Strings("events:PutEvents"),
		Resources: jsii.Strings(busArn),
	}))
	fn.AddEventSource(awslambdaeventsources.NewDynamoEventSource(s.table, &awslambdaeventsources.DynamoEventSourceProps{
		StartingPosition:        awslambda.StartingPosition_LATEST,
		BatchSize:               jsii.Number(100),
		BisectBatchOnError:      jsii.Bool(true),
		ReportBatchItemFailures: jsii.Bool(true),
		RetryAttempts:           jsii.Number(10),
		MaxRecordAge:            awscdk.Duration_Hours(jsii.Number(6)),
		OnFailure:               awslambdaeventsources.NewSqsDlq(s.dlq),
		// Only circuit items (and their read copies) carry a state: an
		// override write gives a new circuit item the state CLOSED.
		// Counter buckets and probe leases written by the extension never
		// invoke the function. The function checks each record's key
		// again, since attached functions can write attributes on their
		// own keys.
		Filters: &[]*map[string]interface{}{
			awslambda.FilterCriteria_Filter(&map[string]interface{}{
				"dynamodb": map[string]interface{}{"NewImage": map[string]interface{}{"state": map[string]interface{}{"S": []interface{}{"CLOSED", "OPEN", "HALF_OPEN"}}}},
			}),
		},
	}))
	// The stream grant adds dynamodb:ListStreams on "*" to the role's
	// default policy: suppress exactly that finding, there only.
	suppress(fn.Role().Node().FindChild(jsii.String("DefaultPolicy")), "AwsSolutions-IAM5",
		"Reading a DynamoDB stream needs dynamodb:ListStreams, which has no resource-level permissions; the other stream actions name the table's stream.",
		"Resource::*")
	return fn
}

// Metric returns one of the breaker's metrics for a service. The table's
// name is a dimension, so two breakers that monitor the same service ID
// read only their own data.
func (s *circuitBreakedService) Metric(name, serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	return s.metric(name, serviceID, "Average", opts)
}

// metric is Metric with a default statistic.
func (s *circuitBreakedService) metric(name, serviceID, statistic string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	if name == "" || serviceID == "" {
		panic(fmt.Sprintf("circuitbreaker: Metric(%q, %q): want a metric name and a service ID", name, serviceID))
	}
	m := awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:  jsii.String(metrics.Namespace),
		MetricName: jsii.String(name),
		DimensionsMap: &map[string]*string{
			metrics.DimensionTable:   s.table.TableName(),
			metrics.DimensionService: jsii.String(serviceID),
		},
		Statistic: jsii.String(statistic),
		Period:    awscdk.Duration_Minutes(jsii.Number(1)),
	})
	if opts != nil {
		m = m.With(opts)
	}
	return m
}

func (s *circuitBreakedService) MetricCircuitOpen(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	return s.metric(metrics.CircuitOpen, serviceID, "Maximum", opts)
}

func (s *circuitBreakedService) MetricCircuitState(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	return s.metric(metrics.CircuitState, serviceID, "Maximum", opts)
}

func (s *circuitBreakedService) MetricHealthCheckLatency(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	return s.metric(metrics.HealthCheckLatency, serviceID, "p99", opts)
}

func (s *circuitBreakedService) MetricCallsRefused(serviceID string, opts *awscloudwatch.MetricOptions) awscloudwatch.Metric {
	return s.metric(metrics.CallsRefused, serviceID, "Sum", opts)
}

func (s *circuitBreakedService) OnStateChange(id string, target awsevents.IRuleTarget) awsevents.Rule {
	if s.props.DisableEvents {
		panic(fmt.Sprintf("circuitbreaker: OnStateChange %q: DisableEvents is set, so no state-change events are sent", id))
	}
	ids := make([]*string, 0, len(s.services))
	for _, svc := range s.services {
		ids = append(ids, jsii.String(svc.ID))
	}
	rule := awsevents.NewRule(s.Construct, jsii.String(id), &awsevents.RuleProps{
		Description: jsii.String("State changes of the circuits of " + *s.Node().Path()),
		EventBus:    s.props.EventBus,
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings(EventSource),
			DetailType: jsii.Strings(EventDetailStateChanged),
			Detail:     &map[string]interface{}{"serviceId": ids},
		},
	})
	if target != nil {
		rule.AddTarget(target)
	}
	return rule
}

// newAlarm alarms while the service's circuit is OPEN. CircuitOpen arrives
// with each check (once per schedule period, which may be minutes) and with
// each invocation of a function that asked; the minutes in between have no
// data, so missing data keeps the alarm's state: an OPEN circuit stays in
// ALARM until a check or a caller reports it no longer OPEN, whatever the
// schedule.
func (s *circuitBreakedService) newAlarm(serviceID string) awscloudwatch.Alarm {
	return awscloudwatch.NewAlarm(s.Construct, jsii.String("OpenAlarm-"+serviceID), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("The circuit of service %s is OPEN: callers get the fallback", serviceID)),
		Metric:             s.MetricCircuitOpen(serviceID, nil),
		Threshold:          jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		DatapointsToAlarm:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_IGNORE,
	})
}

// newDashboard shows one row per circuit: state over time, health-check
// latency and refused calls.
func (s *circuitBreakedService) newDashboard() awscloudwatch.Dashboard {
	d := awscloudwatch.NewDashboard(s.Construct, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DefaultInterval: awscdk.Duration_Hours(jsii.Number(3)),
	})
	for _, svc := range s.services {
		id := svc.ID
		d.AddWidgets(
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title:     jsii.String(id + ": state (0 CLOSED, 1 HALF_OPEN, 2 OPEN)"),
				Left:      &[]awscloudwatch.IMetric{s.MetricCircuitState(id, &awscloudwatch.MetricOptions{Label: jsii.String("state")})},
				LeftYAxis: &awscloudwatch.YAxisProps{Min: jsii.Number(0), Max: jsii.Number(2), ShowUnits: jsii.Bool(false)},
				Width:     jsii.Number(8),
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(id + ": health-check latency (ms)"),
				Left: &[]awscloudwatch.IMetric{
					s.MetricHealthCheckLatency(id, &awscloudwatch.MetricOptions{Statistic: jsii.String("p50"), Label: jsii.String("p50")}),
					s.MetricHealthCheckLatency(id, &awscloudwatch.MetricOptions{Label: jsii.String("p99")}),
				},
				Width: jsii.Number(8),
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(id + ": calls refused"),
				Left:  &[]awscloudwatch.IMetric{s.MetricCallsRefused(id, &awscloudwatch.MetricOptions{Label: jsii.String("refused")})},
				Width: jsii.Number(8),
			}),
		)
	}
	return d
}
