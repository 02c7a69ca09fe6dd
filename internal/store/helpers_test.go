package store

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbcount"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/logbuf"
)

// countingAPI counts the calls that reach DynamoDB.
type countingAPI = dbcount.Client

// logBuffer collects JSON log lines safely from many goroutines.
type logBuffer = logbuf.Buffer

// withMsg returns the lines whose msg is msg.
func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// newTestStore starts dynalite, creates a table and returns a Store that
// logs to the returned buffer, plus the counting client under it.
func newTestStore(t *testing.T) (*Store, *countingAPI, *logBuffer) {
	t.Helper()
	srv := dynalite.Start(t)
	api := &countingAPI{API: srv.Client()}
	logs := &logBuffer{}
	s := New(api, srv.NewTable(t)).WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))
	return s, api, logs
}

type typesAV = types.AttributeValue

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// newFaultyStore is newTestStore with every request going through a
// dbfault transport, below the SDK and its retries.
func newFaultyStore(t *testing.T, fault func(op string, body []byte) dbfault.Action) (*Store, *dbfault.Transport) {
	t.Helper()
	srv := dynalite.Start(t)
	tr := &dbfault.Transport{Fault: fault}
	return New(tr.Wrap(srv.Client()), srv.NewTable(t)).WithLogger(slog.New(slog.NewJSONHandler(&logBuffer{}, nil))), tr
}

// loseFirst returns a fault that loses the answer of the first request of
// operation op once armed is set, and passes everything else.
func loseFirst(op string, armed *atomic.Bool) func(string, []byte) dbfault.Action {
	var done atomic.Bool
	return func(o string, _ []byte) dbfault.Action {
		if o == op && armed.Load() && done.CompareAndSwap(false, true) {
			return dbfault.LoseAnswer
		}
		return dbfault.Pass
	}
}

// setAttrs sets attributes of item k with UpdateItem, as an attached
// function's role may on its circuit item.
func setAttrs(t *testing.T, s *Store, k string, attrs map[string]types.AttributeValue) {
	t.Helper()
	e := newExpr()
	for a, v := range attrs {
		e.set(a, v)
	}
	tbl := s.Table()
	if _, err := s.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                 &tbl,
		Key:                       key(k),
		UpdateExpression:          aws.String(e.update()),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}); err != nil {
		t.Fatal(err)
	}
}
