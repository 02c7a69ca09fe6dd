package appconfig

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", `{"services":[{"id":"mock-api"}]}`, ""},
		{"full", `{"services":[{"id":"orders","url":"https://x/health","schedule":"rate(5 minutes)","timeout":"2s","failureThreshold":5}]}`, ""},
		{"unknown key", `{"services":[{"id":"a","timeoutSeconds":2}]}`, "unknown field"},
		{"no services", `{"services":[]}`, "no services"},
		{"bad id", `{"services":[{"id":"a b"}]}`, "may hold only"},
		{"bad duration", `{"services":[{"id":"a","timeout":"soon"}]}`, "timeout"},
		{"negative duration", `{"services":[{"id":"a","openCooldown":"-1s"}]}`, "positive"},
		{"intervals", `{"services":[{"id":"a","confirmInterval":"2s","checkInterval":"10s"}]}`, ""},
		{"confirmation off", `{"services":[{"id":"a","confirmInterval":"0s"}]}`, ""},
		{"negative confirm interval", `{"services":[{"id":"a","confirmInterval":"-2s"}]}`, "confirmInterval"},
		{"bad check interval", `{"services":[{"id":"a","checkInterval":"0s"}]}`, "checkInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Parse = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Parse = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfirmation(t *testing.T) {
	tests := []struct {
		in       string
		interval time.Duration
		off      bool
	}{
		{"", 0, false},
		{"2s", 2 * time.Second, false},
		{"0s", 0, true},
	}
	for _, tt := range tests {
		d, off, err := Service{ConfirmInterval: tt.in}.Confirmation()
		if err != nil || d != tt.interval || off != tt.off {
			t.Errorf("Confirmation(%q) = %s, %v, %v; want %s, %v", tt.in, d, off, err, tt.interval, tt.off)
		}
	}
}

func TestRepositoryConfigLoads(t *testing.T) {
	f, err := Load(filepath.Join("..", "..", DefaultPath))
	if err != nil {
		t.Fatal(err)
	}
	if f.Services[0].ID == "" {
		t.Fatal("first service has no ID")
	}
}
