package app

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
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

// In Lambda Managed Instances (and wherever INVOKE is refused) the
// extension registers for SHUTDOWN only, starts, and does the INVOKE work
// on its timer: failed calls reported to it reach the table without any
// INVOKE event, and SHUTDOWN still ends it cleanly.
func TestWithoutInvokeEventsTheTimerDoesTheWork(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantWarn bool
	}{
		{"managed instances", map[string]string{EnvInitType: InitManagedInstances}, false},
		{"INVOKE refused elsewhere", map[string]string{EnvInitType: "on-demand"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := dynalite.Start(t)
			table := srv.NewTable(t)
			env := dynaliteEnv(srv, table)
			env["CIRCUIT_BREAKER_REFRESH_INTERVAL"] = "100ms"
			env["CIRCUIT_BREAKER_LOG_LEVEL"] = "debug"
			maps.Copy(env, tt.env)
			r := startWith(t, env, func(fake *extapitest.Server) {
				fake.Refuse(extapi.Invoke, 403, "Extension.InvalidEventType")
			})
			addr := r.waitReady(t)
			regs := r.fake.Registrations()
			if last := regs[len(regs)-1]; !slices.Equal(last.Events, []extapi.EventType{extapi.Shutdown}) {
				t.Fatalf("registrations %+v, want SHUTDOWN only last", regs)
			}
			if warned := strings.Contains(r.logs.String(), "registration for INVOKE refused"); warned != tt.wantWarn {
				t.Errorf("warned %v, want %v", warned, tt.wantWarn)
			}
			if !strings.Contains(r.logs.String(), `"events":"SHUTDOWN"`) {
				t.Error("the ready line does not say SHUTDOWN only")
			}
			failed := false
			outs := []api.Outcome{{Success: &failed, LatencyMs: 5}, {Success: &failed, LatencyMs: 5}, {Success: &failed, LatencyMs: 5}}
			if code := report(t, addr, "svc", outs); code != http.StatusAccepted {
				t.Fatalf("report = %d", code)
			}
			st := store.New(srv.Client(), table)
			deadline := time.Now().Add(10 * time.Second)
			for {
				bs, err := st.GetBuckets(context.Background(), "svc", breaker.WindowStarts(time.Now(), 30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				var failures int64
				for _, b := range bs {
					failures += b.Failures
				}
				if failures == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the table holds %d failures 10s after the reports, want 3 written by a tick", failures)
				}
				time.Sleep(20 * time.Millisecond)
			}
			r.fake.SendShutdown(2 * time.Second)
			if code := r.exitCode(t); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}
