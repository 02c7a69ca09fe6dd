package api

import "testing"

func TestToken(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"session token wins", map[string]string{EnvSessionToken: "s", EnvContainerAuthToken: "c"}, "s"},
		{"container token when no session token", map[string]string{EnvContainerAuthToken: "c"}, "c"},
		{"empty session token falls through", map[string]string{EnvSessionToken: "", EnvContainerAuthToken: "c"}, "c"},
		{"neither: check off", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Token(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Token() = %q, want %q", got, tt.want)
			}
		})
	}
}
