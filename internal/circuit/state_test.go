package circuit

import (
	"strings"
	"testing"
	"time"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id      string
		wantErr string
	}{
		{"mock-api", ""},
		{"Orders_v2", ""},
		{"9lives", ""},
		{"", "empty"},
		{"-lead", "must start"},
		{"has space", "may hold only"},
		{"a/b", "may hold only"},
		{"a#b", "may hold only"},
		{strings.Repeat("x", MaxIDLength+1), "longer than"},
		{strings.Repeat("x", MaxIDLength), ""},
	}
	for _, tt := range tests {
		err := ValidateID(tt.id)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateID(%q) = %v, want error containing %q", tt.id, err, tt.wantErr)
		}
	}
}

func TestEffectiveStateAndAllowed(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		c       Circuit
		want    State
		allowed bool
	}{
		{"new circuit", New("a"), Closed, true},
		{"empty state", Circuit{ID: "a"}, Closed, true},
		{"open", Circuit{State: Open}, Open, false},
		{"half open", Circuit{State: HalfOpen}, HalfOpen, true},
		{"forced open wins", Circuit{State: Closed, Override: ForcedOpen}, Open, false},
		{"forced closed wins", Circuit{State: Open, Override: ForcedClosed, OverrideUntil: now.Add(time.Minute)}, Closed, true},
		{"expired override ignored", Circuit{State: Open, Override: ForcedClosed, OverrideUntil: now}, Open, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.EffectiveState(now); got != tt.want {
				t.Errorf("EffectiveState = %s, want %s", got, tt.want)
			}
			if got := tt.c.Allowed(now); got != tt.allowed {
				t.Errorf("Allowed = %v, want %v", got, tt.allowed)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	for _, s := range []State{Closed, Open, HalfOpen} {
		got, err := ParseState(string(s))
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseState("open"); err == nil {
		t.Error("ParseState(\"open\") succeeded, want error: states are upper case")
	}
}
