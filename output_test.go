package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// runOnStream runs the binary with stdout and stderr on one file, as systemd connects a unit to
// the journal, with JOURNAL_STREAM naming that file when journal is true. It returns the lines.
func runOnStream(t *testing.T, w *world, journal bool, args ...string) []string {
	t.Helper()
	f, err := os.Create(filepath.Join(w.dir, fmt.Sprintf("stream-%v-%d", journal, len(args))))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := append([]string{}, w.env...)
	if journal {
		var st syscall.Stat_t
		syscall.Fstat(int(f.Fd()), &st)
		env = append(env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	cmd.Run()
	b, _ := os.ReadFile(f.Name())
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// Under the journal every line carries its priority: the failure at err, so that
// `journalctl -p err` shows it; with --log-format json every line is JSON as well.
func TestJournalPriorityAndJSONLines(t *testing.T) {
	w := newWorld(t)
	missing := filepath.Join(w.dir, "no-such-repo")
	args := append([]string{"check", "--repo", missing}, w.common(testEnv["SSH_SHELL_KEY"])...)

	prefixed := regexp.MustCompile(`^<([0-7])>`)
	text := runOnStream(t, w, true, args...)
	var errLines []string
	for _, l := range text {
		m := prefixed.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("a line without priority under the journal: %q\n%s", l, strings.Join(text, "\n"))
			continue
		}
		if m[1] == "3" {
			errLines = append(errLines, l)
		}
	}
	joined := strings.Join(errLines, "\n")
	if !strings.Contains(joined, "<3>FAILED  "+missing) || !strings.Contains(joined, "<3>cht-backup: error:") || !strings.Contains(joined, "<3>cht-backup: what to do:") {
		t.Errorf("the failure is not at priority err:\n%s", strings.Join(text, "\n"))
	}

	js := runOnStream(t, w, true, append(args, "--log-format", "json")...)
	levels := map[string]bool{}
	for _, l := range js {
		rest := prefixed.ReplaceAllString(l, "")
		if rest == l {
			t.Errorf("a line without priority: %q", l)
		}
		var e struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(rest), &e); err != nil || e.Msg == "" {
			t.Errorf("not a JSON log line: %q (%v)", l, err)
			continue
		}
		if wantPrio := map[string]string{"error": "<3>", "warning": "<4>", "info": "<6>"}[e.Level]; !strings.HasPrefix(l, wantPrio) {
			t.Errorf("level %s under priority %s", e.Level, l[:3])
		}
		levels[e.Level] = true
	}
	if !levels["error"] {
		t.Errorf("no error-level JSON line:\n%s", strings.Join(js, "\n"))
	}

	// Outside the journal (output redirected to a file) nothing is prefixed.
	for _, l := range runOnStream(t, w, false, args...) {
		if prefixed.MatchString(l) {
			t.Errorf("priority prefix outside the journal: %q", l)
		}
	}
}
