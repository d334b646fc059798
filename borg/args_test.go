package borg

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func mustRepo(t *testing.T, s string) Repository {
	t.Helper()
	r, err := ParseRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestArgvBuilders(t *testing.T) {
	remote := mustRepo(t, "ssh://borg@backup.example:2222/./cht")
	local := mustRepo(t, "/mnt/usb/cht")
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"init", InitArgs(remote), []string{"init", "--log-json", "--encryption", "repokey-blake2", "--append-only", "ssh://borg@backup.example:2222/./cht"}},
		{"key export", KeyExportArgs(local, "/s/key", false), []string{"key", "export", "--log-json", "/mnt/usb/cht", "/s/key"}},
		{"key export paper", KeyExportArgs(local, "/s/key.txt", true), []string{"key", "export", "--log-json", "--paper", "/mnt/usb/cht", "/s/key.txt"}},
		{"info repo", InfoArgs(local, ""), []string{"info", "--log-json", "--json", "/mnt/usb/cht"}},
		{"info archive", InfoArgs(local, "h-1"), []string{"info", "--log-json", "--json", "/mnt/usb/cht::h-1"}},
		{"archives info", ArchivesInfoArgs(local), []string{"info", "--log-json", "--json", "--glob-archives", "*", "--sort-by", "timestamp", "/mnt/usb/cht"}},
		{"list", ListArgs(remote), []string{"list", "--log-json", "--json", "ssh://borg@backup.example:2222/./cht"}},
		{"create default compression, .shards first", CreateArgs(local, CreateOptions{Archive: "h-2026", Paths: []string{"/d/.shards", "/d/shards", "cht-backup"}}),
			[]string{"create", "--log-json", "--json", "--compression", "lz4", "/mnt/usb/cht::h-2026", "/d/.shards", "/d/shards", "cht-backup"}},
		{"create progress excludes zstd", CreateArgs(local, CreateOptions{Archive: "a", Paths: []string{"/x"}, Compression: "zstd,3", Excludes: []string{"sh:**/*.tmp", "/x/y"}, Progress: true}),
			[]string{"create", "--log-json", "--json", "--progress", "--compression", "zstd,3", "--exclude", "sh:**/*.tmp", "--exclude", "/x/y", "/mnt/usb/cht::a", "/x"}},
		{"create dry run lists, no json", CreateArgs(local, CreateOptions{Archive: "a", Paths: []string{"/x"}, DryRun: true}),
			[]string{"create", "--log-json", "--dry-run", "--list", "--compression", "lz4", "/mnt/usb/cht::a", "/x"}},
		{"create with CouchDB chunker params and compaction exclude file", CreateArgs(local, CreateOptions{Archive: "a", Paths: []string{"/x"}, ChunkerParams: CouchDBChunkerParams, Excludes: []string{"sh:**/*.tmp"}, ExcludeFrom: "cht-backup/excludes"}),
			[]string{"create", "--log-json", "--json", "--compression", "lz4", "--chunker-params", "buzhash,14,18,16,4095", "--exclude", "sh:**/*.tmp", "--exclude-from", "cht-backup/excludes", "/mnt/usb/cht::a", "/x"}},
		{"last archive info", LastArchiveInfoArgs(local), []string{"info", "--log-json", "--json", "--last", "1", "/mnt/usb/cht"}},
		{"check", CheckArgs(local, CheckOptions{}), []string{"check", "--log-json", "--progress", "/mnt/usb/cht"}},
		{"check verify last", CheckArgs(local, CheckOptions{VerifyData: true, Last: 3}), []string{"check", "--log-json", "--progress", "--verify-data", "--last", "3", "/mnt/usb/cht"}},
		{"extract", ExtractArgs(local, "a", ExtractOptions{Progress: true}), []string{"extract", "--log-json", "--progress", "/mnt/usb/cht::a"}},
		{"extract numeric ids", ExtractArgs(local, "a", ExtractOptions{Progress: true, NumericIDs: true, Paths: []string{"cht-backup/manifest.json"}}), []string{"extract", "--log-json", "--progress", "--numeric-ids", "/mnt/usb/cht::a", "cht-backup/manifest.json"}},
		{"extract dry paths", ExtractArgs(local, "a", ExtractOptions{DryRun: true, Paths: []string{"cht-backup"}}), []string{"extract", "--log-json", "--dry-run", "/mnt/usb/cht::a", "cht-backup"}},
		{"lock wait inserted after --log-json", withLockWait(KeyExportArgs(local, "/k", false), 7), []string{"key", "export", "--log-json", "--lock-wait", "7", "/mnt/usb/cht", "/k"}},
		{"lock wait zero leaves argv alone", withLockWait(ListArgs(local), 0), []string{"list", "--log-json", "--json", "/mnt/usb/cht"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("argv\n got %q\nwant %q", tt.got, tt.want)
			}
		})
	}
}

func TestParseRepository(t *testing.T) {
	tests := []struct {
		in   string
		want Repository
	}{
		{"ssh://borg@backup.server/./cht", Repository{Raw: "ssh://borg@backup.server/./cht", User: "borg", Host: "backup.server", Path: "cht"}},
		{"ssh://borg@127.0.0.1:2222/home/borg/repos/x", Repository{Raw: "ssh://borg@127.0.0.1:2222/home/borg/repos/x", User: "borg", Host: "127.0.0.1", Port: 2222, Path: "/home/borg/repos/x"}},
		{"ssh://h/~/r", Repository{Raw: "ssh://h/~/r", Host: "h", Path: "r"}},
		{"ssh://u@[::1]:22/./r", Repository{Raw: "ssh://u@[::1]:22/./r", User: "u", Host: "::1", Port: 22, Path: "r"}},
		{"borg@backup.server:cht", Repository{Raw: "borg@backup.server:cht", User: "borg", Host: "backup.server", Path: "cht"}},
		{"backup.server:/srv/cht", Repository{Raw: "backup.server:/srv/cht", Host: "backup.server", Path: "/srv/cht"}},
		{"/mnt/usb/cht", Repository{Raw: "/mnt/usb/cht", Path: "/mnt/usb/cht"}},
		{"file:///mnt/usb/cht", Repository{Raw: "file:///mnt/usb/cht", Path: "/mnt/usb/cht"}},
		{"ssh://h:65535/r", Repository{Raw: "ssh://h:65535/r", Host: "h", Port: 65535, Path: "/r"}},
		{"ssh://h:1/r", Repository{Raw: "ssh://h:1/r", Host: "h", Port: 1, Path: "/r"}},
		{"[fe80::1]:cht", Repository{Raw: "[fe80::1]:cht", Host: "fe80::1", Path: "cht"}},
	}
	for _, tt := range tests {
		got, err := ParseRepository(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "ssh://host", "ssh://host:99999/x", "ssh://host:65536/x", "ssh://host:0/x", "host:", "/repo::archive", "[fe80::1]:cht::a"} {
		if _, err := ParseRepository(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	rel, err := ParseRepository("some/dir")
	if err != nil || !rel.Local() || rel.Path[0] != '/' || rel.Raw != rel.Path {
		t.Errorf("relative local path not made absolute: %+v %v", rel, err)
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		support bool
	}{
		{"borg 1.2.4\n", Version{1, 2, 4}, true},
		{"borg 1.4.0b1", Version{1, 4, 0}, true},
		{"borg 1.4.3", Version{1, 4, 3}, true},
		{"borg 1.1.18", Version{1, 1, 18}, false},
		{"borg 2.0.0b14", Version{2, 0, 0}, false},
	}
	for _, tt := range tests {
		v, err := ParseVersion(tt.in)
		if err != nil || v != tt.want {
			t.Errorf("%q: got %v %v", tt.in, v, err)
		}
		if got := CheckSupported(v) == nil; got != tt.support {
			t.Errorf("%v supported=%v, want %v", v, got, tt.support)
		}
	}
	if _, err := ParseVersion("command not found"); err == nil {
		t.Error("want an error for no version")
	}
	if !(Version{1, 4, 0}).modernExitCodes() || (Version{1, 2, 9}).modernExitCodes() {
		t.Error("modern exit codes belong to 1.4 and later only")
	}
}

func TestRSH(t *testing.T) {
	got := RSH("/root/.ssh/id backup", "/etc/cht-backup/known_hosts")
	want := "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=20 -o ServerAliveInterval=30 -o ServerAliveCountMax=4 " +
		"-o ForwardAgent=no -o ClearAllForwardings=yes " +
		"-o UserKnownHostsFile=/etc/cht-backup/known_hosts -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -i '/root/.ssh/id backup'"
	if got != want {
		t.Errorf("RSH\n got %s\nwant %s", got, want)
	}
	if got := RSH("", ""); got != "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=20 -o ServerAliveInterval=30 -o ServerAliveCountMax=4 -o ForwardAgent=no -o ClearAllForwardings=yes" {
		t.Errorf("RSH without key: %s", got)
	}
}

func TestEnvironKeepsSecretsOut(t *testing.T) {
	base := []string{"PATH=/usr/bin", "BORG_PASSPHRASE=hunter2", "BORG_NEW_PASSPHRASE=x", "CHT_BACKUP_REPO=/r", "BORG_RSH=ssh -o StrictHostKeyChecking=no", "HOME=/root"}
	c := Credentials{Passphrase: NewSecret("hunter2\n"), SSHKey: "/k", KnownHosts: "/kh"}
	env := c.environ(base, false, 3)
	joined := ""
	for _, kv := range env {
		joined += kv + "\n"
	}
	for _, bad := range []string{"hunter2", "BORG_NEW_PASSPHRASE", "CHT_BACKUP_REPO", "StrictHostKeyChecking=no", "BORG_EXIT_CODES"} {
		if contains(joined, bad) {
			t.Errorf("environment holds %q:\n%s", bad, joined)
		}
	}
	for _, want := range []string{"PATH=/usr/bin", "BORG_PASSPHRASE_FD=3", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no", "StrictHostKeyChecking=yes"} {
		if !contains(joined, want) {
			t.Errorf("environment lacks %q:\n%s", want, joined)
		}
	}
	if env := (Credentials{PassCommand: "pass show borg"}).environ(nil, true, 3); !contains(fmtEnv(env), "BORG_PASSCOMMAND=pass show borg") || !contains(fmtEnv(env), "BORG_EXIT_CODES=modern") {
		t.Errorf("passcommand / modern codes missing: %v", env)
	}
	if s := NewSecret("hunter2"); s.String() != "[redacted]" || string(s.Bytes()) != "hunter2" {
		t.Error("Secret must print redacted and keep its bytes")
	}
}

func fmtEnv(env []string) string {
	s := ""
	for _, kv := range env {
		s += kv + "\n"
	}
	return s
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/home/ubuntu/cht/couchdb":        "/home/ubuntu/cht/couchdb",
		"/a b/c":                          "'/a b/c'",
		"/it's":                           `'/it'"'"'s'`,
		"cht-nginx-1:/etc/nginx/private/": "cht-nginx-1:/etc/nginx/private/",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("%q -> %s, want %s", in, got, want)
		}
		if out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(in)).Output(); err != nil || string(out) != in {
			t.Errorf("sh reads %s as %q", ShellQuote(in), out)
		}
	}
}

func TestItemsArgsAndParse(t *testing.T) {
	repo, err := ParseRepository("/srv/repo")
	if err != nil {
		t.Fatal(err)
	}
	got := ItemsArgs(repo, "host-1", "a/b")
	want := []string{"list", "--log-json", "--json-lines", "/srv/repo::host-1", "a/b"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ItemsArgs = %q, want %q", got, want)
	}
	items, err := ParseItems([]byte(`{"type": "d", "mode": "drwxr-xr-x", "path": "h/couchdb", "size": 0}
{"type": "-", "mode": "-rw-r--r--", "path": "h/couchdb/shards/00-ff/medic.1.couch", "size": 1234, "healthy": true}

{"type": "l", "path": "x/link", "linktarget": "t", "size": 0}
`))
	if err != nil || len(items) != 3 || items[1].Size != 1234 || items[1].Type != "-" || items[0].Type != "d" || items[2].Path != "x/link" {
		t.Fatalf("ParseItems = %+v, %v", items, err)
	}
	if _, err := ParseItems([]byte("not json\n")); err == nil {
		t.Fatal("garbage must be an error")
	}
}
