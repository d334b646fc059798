package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/clidoc"
)

// completionCases are a user's half-typed lines and what TAB must offer (among others).
var completionCases = []struct {
	line string // words typed so far; the last one is being completed
	want []string
	not  []string
}{
	{"cht-backup sch", []string{"schedule"}, nil},
	{"cht-backup ", []string{"preflight", "init", "backup", "archives", "status", "schedule", "check", "key", "restore", "verify", "completion", "--version"}, []string{"man", "help"}},
	{"cht-backup schedule ", []string{"print", "install", "remove"}, []string{"backup"}},
	{"cht-backup schedule print --on", []string{"--on-calendar"}, nil},
	{"cht-backup restore NAME --ta", []string{"--target"}, nil},
	{"cht-backup --repo /srv/backup back", []string{"backup"}, nil},
	{"cht-backup backup --repo /srv/backup --dry", []string{"--dry-run"}, nil},
	{"cht-backup completion ", []string{"bash", "zsh"}, nil},
	{"cht-backup key ", []string{"export"}, nil},
}

func TestBashCompletionCompletesFromTheCommandDefinitions(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script, err := clidoc.Completion(newApp(), "bash")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range completionCases {
		t.Run(tt.line, func(t *testing.T) {
			// COMP_WORDS and COMP_CWORD are what bash hands a completion function on TAB.
			prog := script + `
read -ra COMP_WORDS <<<"$LINE"
[[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_cht_backup
printf '%s\n' "${COMPREPLY[@]}"
`
			cmd := exec.Command("bash", "-c", prog)
			cmd.Env = append(cmd.Environ(), "LINE="+tt.line)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			checkOffered(t, strings.Fields(string(out)), tt.want, tt.not)
		})
	}
}

func TestZshCompletionCompletesFromTheCommandDefinitions(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh is not installed (scripts/test-env.sh installs it)")
	}
	script, err := clidoc.Completion(newApp(), "zsh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range completionCases {
		t.Run(tt.line, func(t *testing.T) {
			// words and CURRENT are what zsh's completion system hands the function; _describe
			// and _files stand in for the completion system's own functions, printing what they
			// are given, and compdef records the registration.
			prog := `
_describe() { local -a o; o=("${(@P)${@[-1]}}"); print -l -- "${(@)o%%:*}"; }
_files() { print -- FILES; }
compdef() { print -- "compdef $*" >&2; }
` + script + `
words=(${=LINE})
[[ "$LINE" == *" " ]] && words+=("")
CURRENT=${#words}
_cht_backup
`
			cmd := exec.Command("zsh", "-f", "-c", prog)
			cmd.Env = append(cmd.Environ(), "LINE="+tt.line)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("zsh: %v\n%s", err, out)
			}
			checkOffered(t, strings.Fields(string(out)), tt.want, tt.not)
		})
	}
}

func checkOffered(t *testing.T, got, want, not []string) {
	t.Helper()
	has := map[string]bool{}
	for _, g := range got {
		has[g] = true
	}
	for _, w := range want {
		if !has[w] {
			t.Errorf("%q not offered; offered %q", w, got)
		}
	}
	for _, n := range not {
		if has[n] {
			t.Errorf("%q offered, but it is hidden or not a command here", n)
		}
	}
}

func TestManPageListsEveryCommandAndTheCommonFlagsOnce(t *testing.T) {
	app := newApp()
	page, err := clidoc.Man(app, commonFlags())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(page, ".nh\n.TH cht-backup 1") {
		t.Errorf("not a section 1 man page: %.40q", page)
	}
	for _, c := range app.Commands {
		if c.Hidden {
			if strings.Contains(page, ".SH "+c.Name+"\n") {
				t.Errorf("hidden command %s documented", c.Name)
			}
			continue
		}
		if !strings.Contains(page, ".SH "+c.Name+"\n") {
			t.Errorf("command %s has no section", c.Name)
		}
	}
	if n := strings.Count(page, `\fB--passphrase-file\fP`); n != 1 {
		t.Errorf("--passphrase-file documented %d times, want once (global options)", n)
	}
	for _, s := range []string{"CHT_BACKUP_", "<state-dir>/metrics", "*-*-* 02:30:00", "Exit status"} {
		if !strings.Contains(strings.ReplaceAll(page, `\-`, "-"), s) {
			t.Errorf("the page lost %q (markdown ate it?)", s)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "-l", "-")
		cmd.Stdin = strings.NewReader(page)
		cmd.Env = append(cmd.Environ(), "MANWIDTH=100", "MAN_KEEP_STDERR=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "schedule") {
			t.Errorf("man -l cannot render the page: %v\n%.400s", err, out)
		}
	}
}
