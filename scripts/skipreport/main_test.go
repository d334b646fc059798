package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSkipsNamesEachSkipWithItsReason(t *testing.T) {
	events := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:9: SKIPPED: ../shared/couchdb is absent\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"--- SKIP: TestA (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"--- PASS: TestB (0.00s)\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"q","Test":"TestC","Output":"    c_test.go:3: borg is not installed\n"}`,
		`{"Action":"skip","Package":"q","Test":"TestC"}`,
		`{"Action":"skip","Package":"q"}`,
	}, "\n")
	path := filepath.Join(t.TempDir(), "events.json")
	if err := os.WriteFile(path, []byte(events), 0o600); err != nil {
		t.Fatal(err)
	}
	skips, err := readSkips(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(skips) != 2 {
		t.Fatalf("want the 2 skipped tests (not the passed one, not the package), got %+v", skips)
	}
	if skips[0].name != "p.TestA" || skips[0].reason != "a_test.go:9: SKIPPED: ../shared/couchdb is absent" {
		t.Errorf("first skip: %+v", skips[0])
	}
	if !strings.Contains(skips[0].reason, AllowedSkip) || strings.Contains(skips[1].reason, AllowedSkip) {
		t.Errorf("only the CouchDB skip is the allowed one: %+v", skips)
	}
	if skips[1].name != "q.TestC" || skips[1].reason != "c_test.go:3: borg is not installed" {
		t.Errorf("second skip: %+v", skips[1])
	}
}
