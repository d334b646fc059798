package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The README's try-it command must keep working: it runs the whole job on the built-in sample.
func TestDemoScriptRunsTheWholeCycle(t *testing.T) {
	needEnv(t)
	out, err := exec.Command("bash", "scripts/demo.sh").CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "The whole cycle ran") || !strings.Contains(s, "identical.") {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, s)
	}
	for _, want := range []string{"preflight passed", "created ", "skipped: tls", "verdict: OK", "restored archive"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
