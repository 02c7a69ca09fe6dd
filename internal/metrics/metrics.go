// Package metrics writes CloudWatch metrics as Embedded Metric Format (EMF)
// log lines: one JSON object per line on the log stream, which CloudWatch
// Logs turns into metrics with no API call. It also names every metric the
// project emits, so the CDK construct's alarms and dashboard use the same
// names as the code.
package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every metric.
const Namespace = "LambdaCircuitBreaker"

// DimensionService is the dimension that names the circuit.
const DimensionService = "ServiceId"

// DimensionTable is the dimension that names the breaker: its state
// table's name. Two breakers that monitor services with the same ID (two
// apps in one account and region, say) have different tables, so their
// metrics and alarms never mix.
const DimensionTable = "Table"

// Metric names emitted by the updater.
const (
	// HealthCheckFailed is 1 for a failed check and 0 for a healthy one.
	HealthCheckFailed = "HealthCheckFailed"
	// HealthCheckLatency is the check's latency in milliseconds.
	HealthCheckLatency = "HealthCheckLatency"
	// CircuitState is the effective state after a check: 0 CLOSED,
	// 1 HALF_OPEN, 2 OPEN.
	CircuitState = "CircuitState"
	// CircuitOpen is 1 while the effective state is OPEN, else 0.
	CircuitOpen = "CircuitOpen"
	// Transitions counts state transitions.
	Transitions = "Transitions"
)

// Metric names emitted by the extension.
const (
	// CacheHits counts lookups answered from a fresh cached value.
	CacheHits = "CacheHits"
	// CacheMisses counts lookups of circuits with no cached value.
	CacheMisses = "CacheMisses"
	// CacheWaits counts lookups whose cached value was older than the
	// maximum age and that waited for, and got, a fresh one.
	CacheWaits = "CacheWaits"
	// StaleAnswers counts lookups answered from a value that could not be
	// refreshed.
	StaleAnswers = "StaleAnswers"
	// CallsRefused counts the calls denied: lookups answered with
	// allowed=false. (The name is kept for the alarms built on it.)
	CallsRefused = "CallsRefused"
	// OutcomesRefused counts reported calls whose outcomes the extension
	// rejected (answer 503) because memory already held the counts of its
	// maximum number of circuits. Emitted with ServiceId AllServices.
	OutcomesRefused = "OutcomesRefused"
	// TokensRejected counts requests to the local API refused with 401: a
	// missing or wrong token, so the caller's failure policy decides for
	// it. Emitted with ServiceId AllServices, at most once a minute.
	TokensRejected = "TokensRejected"
)

// AllServices is the ServiceId of metrics that are not about one service.
const AllServices = "*"

// Unit is a CloudWatch metric unit.
type Unit string

// Units used here.
const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
	None         Unit = "None"
)

// Value is one metric value in a record.
type Value struct {
	Name  string
	Unit  Unit
	Value float64
}

// Writer writes EMF records of one breaker to one stream, one line each,
// safely from several goroutines.
type Writer struct {
	mu    sync.Mutex
	out   io.Writer
	table string
	now   func() time.Time
}

// NewWriter returns a Writer on out (os.Stdout in a Lambda function and for
// the extension, whose lines reach the same log group) for the breaker
// whose state table is table: every record carries it as the dimension
// DimensionTable, beside DimensionService.
func NewWriter(out io.Writer, table string) *Writer {
	return &Writer{out: out, table: table, now: time.Now}
}

// Emit writes one record for service with the given values and extra
// properties (searchable in Logs Insights, not metrics).
func (w *Writer) Emit(service string, values []Value, props map[string]any) error {
	if len(values) == 0 {
		return nil
	}
	defs := make([]map[string]string, 0, len(values))
	record := map[string]any{}
	for k, v := range props {
		record[k] = v
	}
	for _, v := range values {
		defs = append(defs, map[string]string{"Name": v.Name, "Unit": string(v.Unit)})
		record[v.Name] = v.Value
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i]["Name"] < defs[j]["Name"] })
	record[DimensionTable] = w.table
	record[DimensionService] = service
	record["_aws"] = map[string]any{
		"Timestamp": w.now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  Namespace,
			"Dimensions": [][]string{{DimensionTable, DimensionService}},
			"Metrics":    defs,
		}},
	}
	line, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("metrics: encode record: %w", err)
	}
	line = append(line, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.out.Write(line); err != nil {
		return fmt.Errorf("metrics: write record: %w", err)
	}
	return nil
}

// StateValue maps a state name to the CircuitState metric value: CLOSED 0,
// HALF_OPEN 1, OPEN 2; -1 for anything else.
func StateValue(state string) float64 {
	switch state {
	case "CLOSED":
		return 0
	case "HALF_OPEN":
		return 1
	case "OPEN":
		return 2
	}
	return -1
}
