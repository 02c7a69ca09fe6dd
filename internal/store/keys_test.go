package store

import "testing"

func TestParseKey(t *testing.T) {
	tests := []struct {
		key      string
		wantID   string
		wantKind Kind
		wantErr  bool
	}{
		{"orders", "orders", KindCircuit, false},
		{"orders#override", "orders", KindOverride, false},
		{"orders#b#1700000000#0", "orders", KindBucket, false},
		{"orders#b#1700000000#31", "orders", KindBucket, false},
		{"orders#b#1700000000", "orders", KindBucket, false}, // unsharded, earlier versions
		{"orders#b#1700000000#32", "", "", true},
		{"orders#b#1700000000#01", "", "", true},
		{"orders#b#1700000000#", "", "", true},
		{"orders#b#1700000000#x", "", "", true},
		{"orders#b#1700000000#1#2", "", "", true},
		{"orders#b##1", "", "", true},
		{"orders#lease#3", "orders", KindLease, false},
		{"orders#r#1", "orders", KindCopy, false},
		{"orders#r#15", "orders", KindCopy, false},
		{"orders#r#0", "", "", true},
		{"orders#r#16", "", "", true},
		{"orders#r#01", "", "", true},
		{"orders#r#", "", "", true},
		{"orders#r#1#2", "", "", true},
		{"orders#b#x", "", "", true},
		{"orders#b#", "", "", true},
		{"orders#lease#", "", "", true},
		{"orders#override#x", "", "", true},
		{"orders#", "", "", true},
		{"#override", "", "", true},
		{"A#b#x", "", "", true},
		{"a b", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		id, kind, err := ParseKey(tt.key)
		if (err != nil) != tt.wantErr || id != tt.wantID || kind != tt.wantKind {
			t.Errorf("ParseKey(%q) = %q, %q, %v; want %q, %q, error %v", tt.key, id, kind, err, tt.wantID, tt.wantKind, tt.wantErr)
		}
	}
}
