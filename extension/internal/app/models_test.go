package app

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
)

func TestRegisterByModel(t *testing.T) {
	invokeShutdown := []extapi.EventType{extapi.Invoke, extapi.Shutdown}
	shutdownOnly := []extapi.EventType{extapi.Shutdown}
	tests := []struct {
		name       string
		mi         bool
		refuse     int    // status refusing INVOKE; 0: accepted
		errorType  string // of the refusal
		want       [][]extapi.EventType
		wantInvoke bool
		wantWarn   bool
	}{
		{name: "on-demand", want: [][]extapi.EventType{invokeShutdown}, wantInvoke: true},
		{name: "managed instances: SHUTDOWN only, at once", mi: true, refuse: 403, errorType: "Extension.InvalidEventType", want: [][]extapi.EventType{shutdownOnly}},
		{name: "INVOKE refused as by Managed Instances, undetected", refuse: 403, errorType: "Extension.InvalidEventType", want: [][]extapi.EventType{invokeShutdown, shutdownOnly}, wantWarn: true},
		{name: "INVOKE refused for another reason", refuse: 400, errorType: "InvalidRequest", want: [][]extapi.EventType{invokeShutdown, shutdownOnly}, wantWarn: true},
		{name: "INVOKE refused by a failing API", refuse: 500, errorType: "ServiceException", want: [][]extapi.EventType{invokeShutdown, shutdownOnly}, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := extapitest.Start()
			defer fake.Close()
			if tt.refuse != 0 {
				fake.Refuse(extapi.Invoke, tt.refuse, tt.errorType)
			}
			logs := &syncBuffer{}
			log := slog.New(slog.NewJSONHandler(logs, nil))
			ext := extapi.New(fake.Addr)
			invoke, err := register(context.Background(), ext, "circuit-breaker", tt.mi, log)
			if err != nil || invoke != tt.wantInvoke {
				t.Fatalf("register = %v, %v; want %v, no error", invoke, err, tt.wantInvoke)
			}
			regs := fake.Registrations()
			got := make([][]extapi.EventType, len(regs))
			for i, r := range regs {
				got[i] = r.Events
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("registrations = %v, want %v", got, tt.want)
			}
			if ext.Identifier() != extapitest.Identifier {
				t.Errorf("not registered: identifier %q", ext.Identifier())
			}
			warned := strings.Contains(logs.String(), `"level":"WARN","msg":"registration for INVOKE refused`)
			if warned != tt.wantWarn || (tt.wantWarn && !strings.Contains(logs.String(), tt.errorType)) {
				t.Errorf("warning logged %v, want %v with %s: %s", warned, tt.wantWarn, tt.errorType, logs)
			}
		})
	}
}

func TestRegisterFailsWithoutAnAPI(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for _, mi := range []bool{false, true} {
		if _, err := register(context.Background(), extapi.New("127.0.0.1:1"), "x", mi, log); err == nil {
			t.Errorf("mi=%v: register succeeded without an API", mi)
		}
	}
}

func TestManagedInstancesDetected(t *testing.T) {
	for v, want := range map[string]bool{"lambda-managed-instances": true, "on-demand": false, "provisioned-concurrency": false, "snap-start": false, "": false} {
		if got := managedInstances(func(k string) string { return map[string]string{EnvInitType: v}[k] }); got != want {
			t.Errorf("%s=%q: managed instances %v, want %v", EnvInitType, v, got, want)
		}
	}
}
