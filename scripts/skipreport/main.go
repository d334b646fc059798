// Command skipreport reads the events of a test run (`go test -json`, as gotestsum's --jsonfile
// writes them) and prints every skipped test with the reason it gave, so no skip goes unseen.
//
// With -strict it also fails (exit 1) when a test skipped for any reason but the one the project
// allows: the real CouchDB image cannot be had because ../shared/couchdb is absent (an outside
// clone). The test command runs it with -strict as root, where every other component is installed.
//
//	go run ./scripts/skipreport [-strict] EVENTS.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// AllowedSkip is the text a skip's reason must hold to be allowed under -strict.
const AllowedSkip = "shared/couchdb"

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct {
	name   string
	reason string
}

func main() {
	strict := flag.Bool("strict", false, "exit 1 when a test skipped for a reason other than a missing ../shared/couchdb")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: skipreport [-strict] EVENTS.json")
		os.Exit(3)
	}
	skips, err := readSkips(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipreport:", err)
		os.Exit(2)
	}
	if len(skips) == 0 {
		fmt.Println("skipped tests: none")
		return
	}
	fmt.Printf("skipped tests: %d\n", len(skips))
	bad := 0
	for _, s := range skips {
		mark := "SKIP"
		if *strict && !strings.Contains(s.reason, AllowedSkip) {
			mark = "SKIP (not allowed)"
			bad++
		}
		fmt.Printf("  %s %s: %s\n", mark, s.name, s.reason)
	}
	if bad > 0 {
		fmt.Printf("skipreport: %d test(s) skipped for a reason other than a missing ../shared/couchdb; as root every other component must be there\n", bad)
		os.Exit(1)
	}
}

// readSkips returns the skipped tests, sorted, each with the output it printed (the t.Skip text).
func readSkips(path string) ([]skip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	output := map[string]*strings.Builder{}
	var skips []skip
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		key := e.Package + "." + e.Test
		switch e.Action {
		case "output":
			b := output[key]
			if b == nil {
				b = &strings.Builder{}
				output[key] = b
			}
			b.WriteString(e.Output)
		case "skip":
			reason := ""
			if b := output[key]; b != nil {
				reason = skipReason(b.String())
			}
			skips = append(skips, skip{name: key, reason: reason})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(skips, func(i, j int) bool { return skips[i].name < skips[j].name })
	return skips, nil
}

// skipReason keeps the lines a test printed, less go test's own "=== RUN" and "--- SKIP" lines.
func skipReason(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) == 0 {
		return "(no reason given)"
	}
	return strings.Join(keep, " | ")
}
