package main

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

// TestConsumerSynthesizes synthesizes the consumer app, which compiles the
// extension by import path from this other module, and inspects the result.
func TestConsumerSynthesizes(t *testing.T) {
	var dir string
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("synth panicked: %v", r)
			}
		}()
		app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
		NewCheckoutStack(app, "Checkout")
		dir = *app.Synth(nil).Directory()
	}()
	data, err := os.ReadFile(filepath.Join(dir, "Checkout.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(data, &tpl); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var layerKey string
	for id, r := range tpl.Resources {
		count[r.Type]++
		switch r.Type {
		case "AWS::Lambda::LayerVersion":
			layerKey = r.Properties["Content"].(map[string]any)["S3Key"].(string)
		case "AWS::Lambda::Function":
			if strings.HasPrefix(id, "Checkout") {
				env, _ := json.Marshal(r.Properties["Environment"])
				if !strings.Contains(string(env), `"CIRCUIT_BREAKER_SERVICES":"payments"`) {
					t.Errorf("Checkout environment %s lacks the attached service", env)
				}
			}
		}
	}
	for typ, want := range map[string]int{"AWS::Events::Rule": 2, "AWS::DynamoDB::Table": 1, "AWS::Lambda::LayerVersion": 1, "AWS::ApiGateway::RestApi": 0} {
		if count[typ] != want {
			t.Errorf("%d %s, want %d", count[typ], typ, want)
		}
	}
	ext := filepath.Join(dir, "asset."+strings.TrimSuffix(layerKey, ".zip"), "extensions", "circuit-breaker")
	f, err := elf.Open(ext)
	if err != nil {
		t.Fatalf("layer asset: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("extension machine %v, want arm64", f.Machine)
	}
	fmt.Println("consumer synthesized with", len(tpl.Resources), "resources")
}
