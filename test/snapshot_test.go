package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/infra/stack"
)

// TestSnapshot compares the synthesized template with the golden file.
// Regenerate it with: go test ./test -run TestSnapshot -update
func TestSnapshot(t *testing.T) {
	_, st := appStack(t, false)
	got, err := json.MarshalIndent(template(t, st), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(normalise(got), '\n')
	golden := filepath.Join("testdata", "LambdaCircuitBreakerStack.template.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", golden)
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./test -run TestSnapshot -update)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("template differs from %s; if the change is intended, regenerate with `go test ./test -run TestSnapshot -update`\n%s", golden, lineDiff(string(want), string(got)))
	}
}

// lineDiff returns a compact unified-style diff of two texts: the changed
// lines with a few lines of context, by longest common subsequence.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
		at   int
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			ops = append(ops, op{' ', x[i], i + 1})
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			ops = append(ops, op{'+', y[j], i + 1})
			j++
		default:
			ops = append(ops, op{'-', x[i], i + 1})
			i++
		}
	}
	const context = 3
	var sb strings.Builder
	last := -1
	for k, o := range ops {
		if o.kind == ' ' {
			near := false
			for d := max(0, k-context); d <= min(len(ops)-1, k+context); d++ {
				if ops[d].kind != ' ' {
					near = true
					break
				}
			}
			if !near {
				continue
			}
		}
		if last >= 0 && k != last+1 {
			sb.WriteString("@@\n")
		} else if last < 0 {
			sb.WriteString("@@ golden line " + itoa(o.at) + "\n")
		}
		sb.WriteByte(o.kind)
		sb.WriteString(o.line)
		sb.WriteByte('\n')
		last = k
	}
	return sb.String()
}

func itoa(v int) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestLineDiff(t *testing.T) {
	d := lineDiff("a\nb\nc\n", "a\nB\nc\n")
	if !strings.Contains(d, "-b\n") || !strings.Contains(d, "+B\n") {
		t.Fatalf("diff does not show the change:\n%s", d)
	}
}

// TestSnapshotCatchesPropertyChange proves the snapshot check can fail: a
// stack whose MyMicroservice gets more memory must differ from the golden
// file, and the diff must name the property.
func TestSnapshotCatchesPropertyChange(t *testing.T) {
	_, st := appStack(t, false)
	must(t, func() {
		for _, c := range *st.Node().FindAll(constructs.ConstructOrder_PREORDER) {
			if *c.Node().Path() == stack.Name+"/MyMicroservice/Resource" {
				var res awscdk.CfnResource
				jsii.UnsafeCast(c, &res)
				res.AddPropertyOverride(jsii.String("MemorySize"), 256)
			}
		}
	})
	got, err := json.MarshalIndent(template(t, st), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(normalise(got), '\n')
	want, err := os.ReadFile(filepath.Join("testdata", "LambdaCircuitBreakerStack.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) == string(want) {
		t.Fatal("changing MyMicroservice's memory left the template equal to the snapshot")
	}
	if d := lineDiff(string(want), string(got)); !strings.Contains(d, `-        "MemorySize": 128,`) || !strings.Contains(d, `+        "MemorySize": 256,`) {
		t.Fatalf("diff does not show the memory change:\n%s", d)
	}
}
