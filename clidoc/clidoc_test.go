package clidoc

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestEscapeMarkdownKeepsUsageTextLiteral(t *testing.T) {
	tests := []struct{ in, want string }{
		{"CHT_BACKUP_* names", `CHT\_BACKUP\_\* names`},
		{"(default <state-dir>/metrics)", `(default \<state-dir\>/metrics)`},
		{`**--on-calendar**="": SPEC (default: "*-*-* 02:30:00")`, `**--on-calendar**="": SPEC (default: "\*-\*-\* 02:30:00")`},
		{"keep `code_span <x>` as is", "keep `code_span <x>` as is"},
		{"```\nfenced_block <x>\n```", "```\nfenced_block <x>\n```"},
	}
	for _, tt := range tests {
		if got := escapeMarkdown(tt.in); got != tt.want {
			t.Errorf("escapeMarkdown(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCompletionUnknownShell(t *testing.T) {
	_, err := Completion(&cli.App{Name: "x"}, "fish")
	if err == nil || !strings.Contains(err.Error(), "bash, zsh") {
		t.Errorf("err = %v, want the shells it knows", err)
	}
}

func TestCompletionSkipsHiddenAndKnowsValueFlags(t *testing.T) {
	app := &cli.App{Name: "tool", Commands: []*cli.Command{
		{Name: "run", Usage: "run it", Flags: []cli.Flag{&cli.StringFlag{Name: "target"}, &cli.BoolFlag{Name: "force"}}},
		{Name: "secret", Hidden: true},
	}}
	script, err := Completion(app, "bash")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(script, "secret") {
		t.Error("a hidden command is offered")
	}
	if !strings.Contains(script, `case "$prev" in --target)`) {
		t.Errorf("--target's value is not completed as a file:\n%s", script)
	}
	if !strings.Contains(script, `' run') words='--target --force --help -h'`) {
		t.Errorf("run's flags:\n%s", script)
	}
}
