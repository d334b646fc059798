package borg

import (
	"errors"
	"testing"
)

// What borg 1.2 and 1.4 say about files they could not archive, and what it means for the archive.
func TestClassifyWarning(t *testing.T) {
	tests := []struct {
		name, msgid, msg string
		want             WarningKind
		path             string
	}{
		{"1.2 changed", "", "home/cht/couchdb/shards/0-1/medic.1.couch: file changed while we backed it up", WarningChanged, "home/cht/couchdb/shards/0-1/medic.1.couch"},
		{"1.4 changed", "FileChangedWarning", "/d/medic.1.couch: file changed while we backed it up", WarningChanged, "/d/medic.1.couch"},
		{"1.4 race", "BackupRaceConditionError", "/d/x: file type or inode changed while we backed it up (race condition, skipped file)", WarningChanged, ""},
		{"1.2 vanished", "", "/d/shards/0-1/old.1.couch.compact.data: stat: [Errno 2] No such file or directory: 'old.1.couch.compact.data'", WarningVanished, "/d/shards/0-1/old.1.couch.compact.data"},
		{"1.4 vanished", "BackupWarning", "/d/x.couch: open: [Errno 2] No such file or directory: 'x.couch'", WarningVanished, "/d/x.couch"},
		{"1.2 permission denied", "", "src/eacces: open: [Errno 13] Permission denied: 'eacces'", WarningReadError, "src/eacces"},
		{"1.2 I/O error", "", "src/eio: read: [Errno 5] Input/output error", WarningReadError, "src/eio"},
		{"1.4 permission denied", "BackupWarning", "/d/y: open: [Errno 13] Permission denied: 'y'", WarningReadError, "/d/y"},
		{"1.4 I/O error by msgid", "BackupIOError", "/d/z: read failed", WarningReadError, ""},
		{"broken pipe echo", "", "/d/shards/0-1/a.1.couch: read: [Errno 32] Broken pipe", WarningConnection, "/d/shards/0-1/a.1.couch"},
		{"connection reset echo", "", "/d/b: read: [Errno 104] Connection reset by peer", WarningConnection, "/d/b"},
		{"include pattern", "IncludePatternNeverMatchedWarning", "Include pattern 'x' never matched.", WarningOther, ""},
		{"general", "", "something general", WarningOther, ""},
	}
	for _, tt := range tests {
		w := parseWarning(LogMessage{Level: "WARNING", Message: tt.msg, MsgID: tt.msgid})
		if w.Kind != tt.want {
			t.Errorf("%s: kind %v, want %v", tt.name, w.Kind, tt.want)
		}
		if tt.path != "" && w.Path != tt.path {
			t.Errorf("%s: path %q, want %q", tt.name, w.Path, tt.path)
		}
	}
	for k, benign := range map[WarningKind]bool{WarningChanged: true, WarningVanished: true, WarningOther: true, WarningReadError: false, WarningConnection: false} {
		if k.Benign() != benign {
			t.Errorf("%v: benign %v", k, k.Benign())
		}
	}
}

func TestReadErrorsAndReported(t *testing.T) {
	res := &Result{ExitCode: 1, Warnings: []Warning{
		parseWarning(LogMessage{Message: "/d/a: file changed while we backed it up"}),
		parseWarning(LogMessage{Message: "/d/b: open: [Errno 13] Permission denied: 'b'"}),
		parseWarning(LogMessage{Message: "/d/c: read: [Errno 32] Broken pipe"}),
	}}
	if re := res.ReadErrors(false); len(re) != 1 || re[0].Path != "/d/b" {
		t.Errorf("read errors: %+v", re)
	}
	if rep := res.Reported(); len(rep) != 2 || rep[1].Path != "/d/b" {
		t.Errorf("reported: %+v", rep)
	}
	// borg 1.4 says so in its exit code even when no message named the file.
	if re := (&Result{ExitCode: 105}).ReadErrors(true); len(re) != 1 {
		t.Errorf("exit 105 with modern codes: %+v", re)
	}
	if re := (&Result{ExitCode: 100}).ReadErrors(true); len(re) != 0 {
		t.Errorf("exit 100 (file changed) is no read error: %+v", re)
	}
}

// A connection that dropped mid-create: borg 1.2 may end with "Local Exception" after echoing a
// Broken pipe per file; it is a connection failure, retried by the caller.
func TestClassifyDroppedConnection(t *testing.T) {
	for _, text := range []string{
		"/d/a: read: [Errno 32] Broken pipe",
		"BrokenPipeError: [Errno 32] Broken pipe",
		"borg.remote.ConnectionClosed: Connection closed by remote host",
	} {
		if got := classify("Exception", 2, false, text); !errors.Is(got, ErrConnectionClosed) {
			t.Errorf("%q: got %v", text, got)
		}
	}
}

func TestIsCheckpoint(t *testing.T) {
	for name, want := range map[string]bool{
		"host-2024-01-01T000000Z.checkpoint":    true,
		"host-2024-01-01T000000Z.checkpoint.1":  true,
		"host-2024-01-01T000000Z.checkpoint.12": true,
		"host-2024-01-01T000000Z":               false,
		"checkpoint-host":                       false,
		"host.checkpointed":                     false,
	} {
		if IsCheckpoint(name) != want {
			t.Errorf("IsCheckpoint(%q) = %v", name, !want)
		}
	}
}

func TestChildEnvHoldsNoSecret(t *testing.T) {
	env := fmtEnv(ChildEnv([]string{"PATH=/bin", "BORG_PASSPHRASE=hunter2", "BORG_PASSCOMMAND=cat /x", "CHT_BACKUP_REPO=/r", "HOME=/root"}))
	if contains(env, "hunter2") || contains(env, "BORG_PASSCOMMAND") || contains(env, "CHT_BACKUP_") || !contains(env, "PATH=/bin") {
		t.Errorf("child environment: %s", env)
	}
}
