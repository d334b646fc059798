package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorderArgs(t *testing.T) {
	app := newApp()
	app.Commands = append(app.Commands, &cli.Command{Name: "restore", Flags: []cli.Flag{&cli.StringFlag{Name: "target"}, &cli.BoolFlag{Name: "force"}}},
		&cli.Command{Name: "schedule", Subcommands: []*cli.Command{{Name: "print", Flags: []cli.Flag{&cli.StringFlag{Name: "on-calendar"}}}}})
	tests := []struct{ in, want string }{
		{"restore NAME --target DIR", "restore --target DIR -- NAME"},
		{"restore --target DIR NAME", "restore --target DIR -- NAME"},
		{"restore NAME --force --target=DIR", "restore --force --target=DIR -- NAME"},
		{"-v --repo R restore NAME", "restore -v --repo R -- NAME"},
		{"preflight --repo a --repo b -v", "preflight --repo a --repo b -v"},
		{"init extra --json", "init --json -- extra"},
		{"schedule print --on-calendar 02:00", "schedule print --on-calendar 02:00"},
		{"restore NAME -- --odd-name", "restore -- NAME -- --odd-name"},
		{"--help", "--help"},
		{"nosuchcommand --x", "nosuchcommand --x"},
	}
	for _, tt := range tests {
		got := reorderArgs(app, append([]string{"cht-backup"}, strings.Fields(tt.in)...))
		want := append([]string{"cht-backup"}, strings.Fields(tt.want)...)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %q\nwant %q", tt.in, got[1:], want[1:])
		}
	}
}

// Flags beat CHT_BACKUP_* variables, which beat the config file, which beats defaults.
func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cht-backup.env")
	os.WriteFile(cfg, []byte("# config\nCHT_BACKUP_STATE_DIR=/from/file\nCHT_BACKUP_CHT_DIR=/file/cht\nCHT_BACKUP_REPO=\"/r/one,/r/two\"\nCHT_BACKUP_REPO_LOCK_WAIT=5\n"), 0o600)
	var got *options
	app := newApp()
	app.Commands = []*cli.Command{{Name: "probe", Action: func(c *cli.Context) error {
		var err error
		got, err = loadOptions(c)
		return err
	}}}
	for _, cmd := range app.Commands {
		prepareCommand(cmd)
	}
	t.Setenv("CHT_BACKUP_CHT_DIR", "/env/cht")
	t.Setenv("CHT_BACKUP_REPO_LOCK_WAIT", "9")
	if err := app.Run([]string{"cht-backup", "probe", "--config", cfg, "--repo-lock-wait", "11"}); err != nil {
		t.Fatal(err)
	}
	if got.StateDir != "/from/file" || got.ChtDir != "/env/cht" || got.RepoLockWait != 11 {
		t.Errorf("precedence wrong: state=%s cht=%s lock=%d", got.StateDir, got.ChtDir, got.RepoLockWait)
	}
	if len(got.Repos) != 2 || got.Repos[0].Path != "/r/one" || got.Repos[1].Path != "/r/two" {
		t.Errorf("repos from file: %+v", got.Repos)
	}
	os.Unsetenv("CHT_BACKUP_CHT_DIR")
	if err := app.Run([]string{"cht-backup", "probe", "--config", filepath.Join(dir, "missing.env")}); err == nil || !strings.Contains(err.Error(), "cannot read config file") {
		t.Errorf("an explicit missing config file must be an error, got %v", err)
	}
}

// The config file is refused, with its line, where systemd would read it differently; a file
// holding the passphrase must be readable by its owner alone.
func TestConfigFileRefusals(t *testing.T) {
	dir := t.TempDir()
	app := newApp()
	app.Commands = []*cli.Command{{Name: "probe", Action: func(c *cli.Context) error {
		_, err := loadOptions(c)
		return err
	}}}
	for _, cmd := range app.Commands {
		prepareCommand(cmd)
	}
	tests := []struct {
		name, text string
		mode       os.FileMode
		want       string
	}{
		{"inline comment", "CHT_BACKUP_REPO=/var/backups/cht-repo # local copy\n", 0o600, "line 1: the value of CHT_BACKUP_REPO is followed by a \"#\" comment"},
		{"export", "# c\nexport CHT_BACKUP_REPO=/r\n", 0o600, "line 2: \"export \""},
		{"passphrase readable by others", "CHT_BACKUP_REPO=/r\nBORG_PASSPHRASE=x\n", 0o644, "holds BORG_PASSPHRASE (line 2) and has mode 0644"},
		{"passphrase readable by the group", "BORG_PASSPHRASE=x\n", 0o640, "has mode 0640"},
	}
	for _, tt := range tests {
		cfg := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".env")
		if err := os.WriteFile(cfg, []byte(tt.text), tt.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(cfg, tt.mode)
		err := app.Run([]string{"cht-backup", "probe", "--config", cfg})
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != exitUsage {
			t.Errorf("%s: got %v (exit %d), want %q and exit %d", tt.name, err, exitCode(err), tt.want, exitUsage)
		}
		if err != nil && strings.Contains(err.Error(), "local copy") {
			t.Errorf("%s: the error quotes the value: %v", tt.name, err)
		}
	}
	// A passphrase-free file may be world-readable (it names paths, not secrets).
	cfg := filepath.Join(dir, "public.env")
	os.WriteFile(cfg, []byte("CHT_BACKUP_REPO=/r\n"), 0o644)
	os.Chmod(cfg, 0o644)
	if err := app.Run([]string{"cht-backup", "probe", "--config", cfg}); err != nil {
		t.Errorf("a config file without secrets at 0644: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{warnings{n: 2}, 1},
		{usageErrorf("bad"), 3},
		{&userError{err: os.ErrNotExist}, 2},
		{os.ErrPermission, 2},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%v: got %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestShellSplitLikeShlex(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"pass show borg/cht", []string{"pass", "show", "borg/cht"}},
		{"cat '/etc/my secrets/pass'", []string{"cat", "/etc/my secrets/pass"}},
		{`sh -c "echo \"a b\""`, []string{"sh", "-c", `echo "a b"`}},
		{`cat /a\ b`, []string{"cat", "/a b"}},
		{"  spaced\t out  ", []string{"spaced", "out"}},
		{`x''y "" z`, []string{"xy", "", "z"}},
		{"", nil},
		{`cat "/etc/a;b" 'x|y' c\&d`, []string{"cat", "/etc/a;b", "x|y", "c&d"}},
		{"echo $HOME `id`", []string{"echo", "$HOME", "`id`"}},
	}
	for _, tt := range tests {
		got, err := shellSplit(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
	// borg runs the command without a shell: an operator would reach the program as a word.
	for _, bad := range []string{"cat 'open", `echo "open`, "cat /etc/pass | tr -d x", "cat a; echo b", "gpg -d f 2>/dev/null"} {
		if _, err := shellSplit(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// --borg picks the borg binary; CHT_BACKUP_BORG and the config file set it too, default is
// borg from PATH.
func TestBorgSetting(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cht-backup.env")
	os.WriteFile(cfg, []byte("CHT_BACKUP_BORG=/from/file/borg\n"), 0o600)
	empty := filepath.Join(dir, "empty.env")
	os.WriteFile(empty, nil, 0o600)
	var got *options
	app := newApp()
	app.Commands = []*cli.Command{{Name: "probe", Action: func(c *cli.Context) error {
		var err error
		got, err = loadOptions(c)
		return err
	}}}
	for _, cmd := range app.Commands {
		prepareCommand(cmd)
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"--config", empty}, "borg"},
		{"", []string{"--config", cfg}, "/from/file/borg"},
		{"/from/env/borg", []string{"--config", cfg}, "/from/env/borg"},
		{"/from/env/borg", []string{"--config", cfg, "--borg", "/from/flag/borg"}, "/from/flag/borg"},
	} {
		t.Setenv("CHT_BACKUP_BORG", tc.env)
		if tc.env == "" {
			os.Unsetenv("CHT_BACKUP_BORG")
		}
		args := append([]string{"cht-backup", "probe"}, tc.args...)
		if err := app.Run(args); err != nil {
			t.Fatal(err)
		}
		if got.Borg != tc.want {
			t.Errorf("%v with CHT_BACKUP_BORG=%q: borg %q, want %q", tc.args, tc.env, got.Borg, tc.want)
		}
	}
}
