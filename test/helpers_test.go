package test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/infra/stack"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
)

var update = flag.Bool("update", false, "rewrite the golden snapshot files")

func TestMain(m *testing.M) {
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

// cdkContext returns the context of cdk.json, so tests synthesize with the
// same feature flags as `cdk synth`.
func cdkContext(t testing.TB) map[string]interface{} {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "cdk.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Context map[string]interface{} `json:"context"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("parse cdk.json: %v", err)
	}
	return cfg.Context
}

// newApp returns an app with cdk.json's context. With bundle false, no
// stack is bundled: assets get hashes from their targets and nothing is
// compiled.
func newApp(t testing.TB, bundle bool) awscdk.App {
	t.Helper()
	ctx := cdkContext(t)
	if !bundle {
		ctx["aws:cdk:bundling-stacks"] = []interface{}{}
	}
	return awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
}

// appStack synthesizes the app's stack from infra/services.json.
func appStack(t testing.TB, bundle bool) (awscdk.App, awscdk.Stack) {
	t.Helper()
	cfg, err := appconfig.Load(filepath.Join("..", appconfig.DefaultPath))
	if err != nil {
		t.Fatal(err)
	}
	app := newApp(t, bundle)
	var st awscdk.Stack
	must(t, func() { st = stack.New(app, stack.Name, &stack.Props{Config: cfg}) })
	return app, st
}

// must runs f and turns a panic (how jsii reports a failed assertion or an
// invalid construct) into a test failure.
func must(t testing.TB, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%v\n%s", r, debug.Stack())
		}
	}()
	f()
}

// panics runs f and returns the panic message, or "" when f returned.
func panics(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// template returns the stack's template as a generic JSON value.
func template(t testing.TB, st awscdk.Stack) map[string]interface{} {
	t.Helper()
	var tpl map[string]interface{}
	must(t, func() {
		raw := assertions.Template_FromStack(st, nil).ToJSON()
		data, err := json.Marshal(raw)
		if err != nil {
			panic(err)
		}
		if err := json.Unmarshal(data, &tpl); err != nil {
			panic(err)
		}
	})
	return tpl
}

// resources returns the template's resources of one type, by logical ID.
func resources(tpl map[string]interface{}, typ string) map[string]map[string]interface{} {
	out := map[string]map[string]interface{}{}
	for id, r := range tpl["Resources"].(map[string]interface{}) {
		res := r.(map[string]interface{})
		if res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func props(res map[string]interface{}) map[string]interface{} {
	p, _ := res["Properties"].(map[string]interface{})
	return p
}

var assetHash = regexp.MustCompile(`[0-9a-f]{64}`)

// normalise replaces asset hashes, which depend on the Go sources, with a
// placeholder, so the snapshot reflects only the infrastructure.
func normalise(data []byte) []byte {
	return assetHash.ReplaceAll(data, []byte("<asset-hash>"))
}
