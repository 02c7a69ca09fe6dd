// Command local runs the whole stack on one machine, offline and without
// credentials: dynalite as the state table, a stand-in for the mock API,
// the real updater on a short schedule for every service in
// infra/services.json, and MyMicroservice with the real extension under
// the AWS Lambda Runtime Interface Emulator, invoked at a steady rate. It
// prints each circuit's state, the function's answers and every
// transition with its reason. Ctrl-C stops everything it started and
// removes its temporary files.
//
// Run it from the repository root with "make local" (or "go run
// ./infra/local"); switch the mock API with
//
//	curl -d failing http://127.0.0.1:4280/control/mode   # or healthy, hang, slow
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/mockapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

const (
	tableName     = "circuits"
	extensionName = "circuit-breaker"
	localToken    = "local-session-token"
)

type options struct {
	config   string
	mockAddr string
	interval time.Duration
	cooldown time.Duration
	every    time.Duration
	duration time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.config, "config", appconfig.DefaultPath, "monitored services, as the CDK app reads them")
	flag.StringVar(&o.mockAddr, "mock-addr", "127.0.0.1:4280", "loopback address of the mock API stand-in")
	flag.DurationVar(&o.interval, "interval", 2*time.Second, "time between two checks of each service (the local schedule)")
	flag.DurationVar(&o.cooldown, "cooldown", 5*time.Second, "first cool-down of an OPEN circuit (at least 1s)")
	flag.DurationVar(&o.every, "invoke-every", time.Second, "time between two invocations of MyMicroservice")
	flag.DurationVar(&o.duration, "duration", time.Hour, "stop after this long")
	flag.Parse()
	p := &printer{w: os.Stdout, now: time.Now}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, p); err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, p *printer) error {
	if o.interval <= 0 || o.every <= 0 || o.duration <= 0 {
		return errors.New("-interval, -invoke-every and -duration must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	root, err := dynalite.RepoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(o.config) {
		o.config = filepath.Join(root, o.config)
	}
	cfg, err := appconfig.Load(o.config)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "cb-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The mock API stand-in.
	mock := mockapi.New()
	mock.MaxHang = 2 * time.Minute
	mock.OnModeChange = func(m mockapi.Mode, d time.Duration) {
		if m == mockapi.Slow {
			p.printf("mock", "mode %s (%s per answer)", m, d)
			return
		}
		p.printf("mock", "mode %s", m)
	}
	ln, err := net.Listen("tcp", o.mockAddr)
	if err != nil {
		return fmt.Errorf("mock API: %w", err)
	}
	if !ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("mock API: %s is not a loopback address", o.mockAddr)
	}
	mockURL := "http://" + ln.Addr().String()
	mockSrv := &http.Server{Handler: mock, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = mockSrv.Serve(ln) }()
	defer mockSrv.Close()

	checks, err := plan(cfg, mockURL+mockapi.HealthPath, o.cooldown)
	if err != nil {
		return err
	}
	ids := make([]string, len(checks))
	policies := policy.Policies{}
	for i, c := range checks {
		ids[i] = c.ID
		policies[c.ID] = c.Policy
	}

	p.printf("setup", "building the extension, the updater and MyMicroservice")
	bins := map[string]string{}
	for _, pkg := range []string{"./extension", "./functions/updater", "./functions/mymicroservice"} {
		if bins[pkg], err = rie.BuildPackage(ctx, pkg, tmp); err != nil {
			return err
		}
	}

	db, err := dynalite.LaunchWith(dynalite.Options{Stderr: io.Discard})
	if err != nil {
		return err
	}
	defer db.Stop()
	if err := dynalite.CreateTable(ctx, db.Client(), tableName); err != nil {
		return err
	}
	st := store.New(db.Client(), tableName)

	awsEnv := map[string]string{
		"CIRCUIT_BREAKER_TABLE":       tableName,
		"AWS_REGION":                  "us-east-1",
		"AWS_ACCESS_KEY_ID":           "local",
		"AWS_SECRET_ACCESS_KEY":       "local",
		"AWS_ENDPOINT_URL_DYNAMODB":   db.Endpoint,
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	// The mock API runs on 127.0.0.1, which the updater refuses unless told.
	updEnv := maps.Clone(awsEnv)
	updEnv[updater.EnvAllowLocalTargets] = "true"
	upd, err := rie.Launch(rie.Config{
		Function: bins["./functions/updater"],
		Env:      updEnv,
		Output: &lineWriter{fn: func(line []byte) {
			if s, ok := transitionLine(line); ok {
				p.printf("TRANS", "%s", s)
			}
		}},
	})
	if err != nil {
		return fmt.Errorf("updater: %w", err)
	}
	defer upd.Close()

	fnEnv := map[string]string{
		"SERVICE_ID":               ids[0], // as in the CDK app: the first service
		"API_URL":                  mockURL + mockapi.ResourcePath,
		"CIRCUIT_BREAKER_SERVICES": ids[0],
		// The same policies the construct would set, local cool-downs.
		"CIRCUIT_BREAKER_POLICIES": policies.String(),
		"AWS_SESSION_TOKEN":        localToken,
		// Faster than the 1s default, so the demo shows a transition
		// reaching the function within one invocation or two.
		"CIRCUIT_BREAKER_REFRESH_INTERVAL": "250ms",
	}
	for k, v := range awsEnv {
		fnEnv[k] = v
	}
	for _, k := range []string{"CIRCUIT_BREAKER_REFRESH_INTERVAL", "CIRCUIT_BREAKER_MAX_STALENESS", "CIRCUIT_BREAKER_MAX_AGE", "CIRCUIT_BREAKER_FAIL_MODE", "CIRCUIT_BREAKER_PORT", "CIRCUIT_BREAKER_LOG_LEVEL"} {
		if v := os.Getenv(k); v != "" {
			fnEnv[k] = v
		}
	}
	fn, err := rie.Launch(rie.Config{
		Function:   bins["./functions/mymicroservice"],
		Extensions: map[string]string{extensionName: bins["./extension"]},
		Env:        fnEnv,
		Output: &lineWriter{fn: func(line []byte) {
			// The extension moves circuits too: OPEN to HALF_OPEN once the
			// cool-down has passed, and trips from reported calls.
			if s, ok := transitionLine(line); ok {
				p.printf("TRANS", "%s (extension)", s)
			} else if strings.Contains(string(line), `"level":"ERROR"`) || strings.Contains(string(line), "Extension.") {
				p.printf("lambda", "%s", line)
			}
		}},
	})
	if err != nil {
		return fmt.Errorf("MyMicroservice: %w", err)
	}
	defer fn.Close()

	p.printf("setup", "dynalite %s (table %s); mock API %s; services %s", db.Endpoint, tableName, mockURL, strings.Join(ids, ", "))
	p.printf("setup", "checks every %s, cool-down %s; MyMicroservice guards %s, invoked every %s", o.interval, o.cooldown, ids[0], o.every)
	p.printf("setup", "switch the mock: curl -d failing %s%s   (healthy, failing, hang, slow); Ctrl-C stops", mockURL, mockapi.ModePath)

	done := make(chan struct{}, 3)
	go func() { runChecks(ctx, upd, checks, o.interval, p); done <- struct{}{} }()
	go func() { runInvokes(ctx, fn, o.every, p); done <- struct{}{} }()
	go func() { watchStates(ctx, st, ids, p); done <- struct{}{} }()
	<-ctx.Done()
	for i := 0; i < 3; i++ {
		<-done
	}
	p.printf("stop", "stopping: SHUTDOWN to the extension, then dynalite and the mock API")
	if took, err := fn.Shutdown(5 * time.Second); err != nil {
		p.printf("stop", "MyMicroservice: %v", err)
	} else {
		p.printf("stop", "MyMicroservice and its extension exited %s after SIGTERM", took.Round(time.Millisecond))
	}
	_, _ = upd.Shutdown(5 * time.Second)
	return nil
}
