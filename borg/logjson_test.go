package borg

import (
	"errors"
	"testing"
)

func TestDecodeLine(t *testing.T) {
	ev := decodeLine(`{"type": "log_message", "time": 1.5, "message": "Repository /r does not exist.", "levelname": "ERROR", "name": "borg.archiver", "msgid": "Repository.DoesNotExist"}`)
	if ev.log == nil || ev.log.MsgID != "Repository.DoesNotExist" || ev.log.Level != "ERROR" {
		t.Errorf("log message not decoded: %+v", ev)
	}
	ev = decodeLine(`{"original_size": 10, "compressed_size": 5, "deduplicated_size": 2, "nfiles": 3, "path": "home/x", "time": 1.0, "type": "archive_progress", "finished": false}`)
	if ev.progress == nil || ev.progress.NFiles != 3 || ev.progress.Path != "home/x" || ev.progress.OSize != 10 {
		t.Errorf("progress not decoded: %+v", ev.progress)
	}
	ev = decodeLine(`{"type": "progress_percent", "operation": 1, "msgid": "extract", "finished": false, "message": " 5.0% Extracting: x", "current": 5, "total": 100, "time": 1}`)
	if ev.progress == nil || ev.progress.Total != 100 || ev.progress.MsgID != "extract" {
		t.Errorf("percent not decoded: %+v", ev.progress)
	}
	ev = decodeLine(`{"type": "file_status", "status": "C", "path": "home/x/f"}`)
	if ev.file == nil || ev.file.Status != "C" {
		t.Errorf("file status not decoded: %+v", ev)
	}
	if ev := decodeLine("Remote: Host key verification failed.\r\n"); ev.text != "Remote: Host key verification failed." {
		t.Errorf("plain text: %+v", ev)
	}
	if ev := decodeLine("{not json"); ev.text != "{not json" {
		t.Errorf("broken json kept as text: %+v", ev)
	}
}

func TestParseWarning(t *testing.T) {
	tests := []struct{ msg, path string }{
		{"home/ubuntu/cht/couchdb/shards/00000000-1fffffff/medic.1.couch: file changed while we backed it up", "home/ubuntu/cht/couchdb/shards/00000000-1fffffff/medic.1.couch"},
		{"/d/x.couch: [Errno 2] No such file or directory: 'x.couch'", "/d/x.couch"},
		{"/d/y: [Errno 13] Permission denied: 'y'", "/d/y"},
		{"something general", ""},
	}
	for _, tt := range tests {
		if w := parseWarning(LogMessage{Message: tt.msg, Level: "WARNING"}); w.Path != tt.path || w.Message != tt.msg {
			t.Errorf("%q: got path %q", tt.msg, w.Path)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		msgid  string
		code   int
		modern bool
		text   string
		want   error
	}{
		{"msgid passphrase", "PassphraseWrong", 2, false, "", ErrPassphraseWrong},
		{"msgid lock", "LockTimeout", 2, false, "", ErrLockTimeout},
		{"msgid repo", "Repository.DoesNotExist", 2, false, "", ErrRepoNotFound},
		{"ssh text beats connection closed", "ConnectionClosedWithHint", 2, false, "Remote: Host key verification failed.", ErrHostKey},
		{"auth text", "ConnectionClosedWithHint", 2, false, "borg@127.0.0.1: Permission denied (publickey).", ErrAuth},
		{"refused", "ConnectionClosedWithHint", 2, false, "ssh: connect to host 127.0.0.1 port 1: Connection refused", ErrConnectionClosed},
		{"modern code without msgid", "", 52, true, "", ErrPassphraseWrong},
		{"modern code ignored on 1.2", "", 52, false, "", nil},
		{"disk full text", "Exception", 2, false, "OSError: [Errno 28] No space left on device", ErrNoSpace},
		{"signal", "", 130, false, "", ErrCancelled},
		{"lock on a read-only file system is no lock timeout", "LockFailed", 2, false, "Failed to create/acquire the lock /mnt/r/lock.exclusive ([Errno 30] Read-only file system: '/mnt/r/lock.exclusive.tmp')", ErrReadOnly},
		{"read-only on borg 1.4", "", 73, true, "[Errno 30] Read-only file system: '/mnt/r/lock.exclusive'", ErrReadOnly},
		{"lock failed for another reason", "LockFailed", 2, false, "Failed to create/acquire the lock /r/lock.exclusive (timeout).", ErrLockTimeout},
		{"unknown", "Exception", 2, false, "Traceback", nil},
	}
	for _, tt := range tests {
		if got := classify(tt.msgid, tt.code, tt.modern, tt.text); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestErrorIsOneLineWithHint(t *testing.T) {
	e := &Error{Verb: "create", Target: "r::a", ExitCode: 2, MsgID: "ConnectionClosedWithHint", Message: "Connection closed by remote host. Is borg working on the server?",
		Detail: "Remote: Host key verification failed.", Kind: ErrHostKey}
	msg := e.Error()
	if want := "borg create r::a: Connection closed by remote host. Is borg working on the server? (Host key verification failed.)"; msg != want {
		t.Errorf("got  %s\nwant %s", msg, want)
	}
	if !errors.Is(e, ErrHostKey) || e.Hint() == "" {
		t.Error("kind or hint missing")
	}
}

// The one line a failed borg run leaves: borg's message, else the kind's words, else the last
// line of stderr, else the exit status; ssh's own last words added when ssh is what failed.
func TestErrorMessageSaysWhatFailed(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{Kind: ErrLockTimeout, Detail: "Remote: first\nRemote: Failed to create/acquire the lock"}, "repository is locked"},
		{Error{Detail: "Remote: first line\nRemote: Some other failure\n"}, "Some other failure"},
		{Error{ExitCode: 2}, "exit status 2"},
		{Error{Kind: ErrConnectionClosed, Message: "Connection closed by remote host", Detail: "ssh: connect to host b port 22: Connection refused"},
			"Connection closed by remote host (ssh: connect to host b port 22: Connection refused)"},
		{Error{Kind: ErrConnectionClosed, Message: "Connection closed by remote host"}, "Connection closed by remote host"},
		{Error{Kind: ErrAuth, Detail: "borg@b: Permission denied (publickey)."}, "the backup server refused our ssh key (borg@b: Permission denied (publickey).)"},
		{Error{Kind: ErrPassphraseWrong, Message: "passphrase supplied in BORG_PASSPHRASE is incorrect.", Detail: "Remote: noise"}, "passphrase supplied in BORG_PASSPHRASE is incorrect."},
	} {
		tt.e.Verb, tt.e.Target = "list", "r"
		if got, want := tt.e.Error(), "borg list r: "+tt.want; got != want {
			t.Errorf("%+v:\n got  %s\n want %s", tt.e, got, want)
		}
	}
}
