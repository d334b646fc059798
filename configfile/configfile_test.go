package configfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, text, key, want string
	}{
		{"plain", "CHT_BACKUP_REPO=/var/backups/cht-repo\n", "CHT_BACKUP_REPO", "/var/backups/cht-repo"},
		{"blanks around", "  CHT_BACKUP_REPO =  /srv/r  \n", "CHT_BACKUP_REPO", "/srv/r"},
		{"hash inside a word", "BORG_PASSPHRASE=pass#word\n", "BORG_PASSPHRASE", "pass#word"},
		{"single quotes keep backslashes", `BORG_PASSPHRASE='a\b\tc # d'` + "\n", "BORG_PASSPHRASE", `a\b\tc # d`},
		{"double quotes with the shell escapes", `BORG_PASSPHRASE="q\"b\\s\$x\` + "`" + `"`, "BORG_PASSPHRASE", "q\"b\\s$x`"},
		{"a real tab in double quotes", "BORG_PASSPHRASE=\"a\tb\"\n", "BORG_PASSPHRASE", "a\tb"},
		{"empty", "CHT_BACKUP_HEALTHCHECK_URL=\n", "CHT_BACKUP_HEALTHCHECK_URL", ""},
		{"dollar is literal", "BORG_PASSPHRASE=$HOME\n", "BORG_PASSPHRASE", "$HOME"},
		{"hash comment line", "# CHT_BACKUP_REPO=/wrong\nCHT_BACKUP_REPO=/right\n", "CHT_BACKUP_REPO", "/right"},
		{"semicolon comment line", "; systemd style comment\nCHT_BACKUP_REPO=/r\n", "CHT_BACKUP_REPO", "/r"},
		{"CRLF", "CHT_BACKUP_REPO=/r\r\n", "CHT_BACKUP_REPO", "/r"},
		{"later wins", "CHT_BACKUP_REPO=/a\nCHT_BACKUP_REPO=/b\n", "CHT_BACKUP_REPO", "/b"},
		{"quote inside an unquoted value", "BORG_PASSPHRASE=it's\n", "BORG_PASSPHRASE", "it's"},
		{"space after closing quote", "CHT_BACKUP_REPO='/r'   \n", "CHT_BACKUP_REPO", "/r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("test.env", []byte(tt.text))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, ok := f.Values[tt.key]; !ok || got != tt.want {
				t.Fatalf("%s = %q (set %v), want %q", tt.key, got, ok, tt.want)
			}
		})
	}
}

// Each line here would be read one way by cht-backup (or docker compose) and another by
// systemd's EnvironmentFile=, so it is refused with its line number.
func TestParseRefusesWhatSystemdReadsDifferently(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
		reason     string
	}{
		{"inline comment", "CHT_BACKUP_REPO=/var/backups/cht-repo # local copy\n", 1, "comment"},
		{"inline comment after tab", "# ok\nCHT_BACKUP_REPO=/r\t# copy\n", 2, "comment"},
		{"backslash in unquoted value", "BORG_PASSPHRASE=ab\\cd\n", 1, "backslash"},
		{"continuation line", "CHT_BACKUP_REPO=/a\\\n/b\n", 1, "backslash"},
		{"\\t in double quotes", "BORG_PASSPHRASE=\"a\\tb\"\n", 1, `\t in double quotes`},
		{"backslash at end in double quotes", "BORG_PASSPHRASE=\"ab\\\n", 1, "ends in a backslash"},
		{"comment after closing quote", "CHT_BACKUP_REPO=\"/r\" # copy\n", 1, "comment follows the closing quote"},
		{"text after closing quote", "CHT_BACKUP_REPO='/r'x\n", 1, "text follows the closing quote"},
		{"unclosed quote", "BORG_PASSPHRASE='abc\ndef'\n", 1, "not closed"},
		{"comment continued by backslash", "# note \\\nCHT_BACKUP_REPO=/r\n", 1, "comment line ends in a backslash"},
		{"export prefix", "export CHT_BACKUP_REPO=/r\n", 1, "export"},
		{"no equals", "CHT_BACKUP_REPO\n", 1, "expected NAME=VALUE"},
		{"bad name", "CHT-BACKUP-REPO=/r\n", 1, "not a valid variable name"},
		{"digit first", "1REPO=/r\n", 1, "not a valid variable name"},
		{"control character", "BORG_PASSPHRASE=a\x01b\n", 1, "control character"},
		{"invalid utf-8", "BORG_PASSPHRASE=a\xffb\n", 1, "UTF-8"},
		{"byte-order mark", "\xef\xbb\xbfCHT_BACKUP_REPO=/r\n", 1, "byte-order mark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/etc/cht-backup/cht-backup.env", []byte(tt.text))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse accepted %q (err %v)", tt.text, err)
			}
			if se.Line != tt.line || !strings.Contains(se.Reason, tt.reason) {
				t.Fatalf("got line %d %q, want line %d mentioning %q", se.Line, se.Reason, tt.line, tt.reason)
			}
			if !strings.Contains(err.Error(), "/etc/cht-backup/cht-backup.env line ") {
				t.Fatalf("error does not name the file and line: %v", err)
			}
		})
	}
}

func TestErrorsNeverShowTheValue(t *testing.T) {
	for _, text := range []string{
		"BORG_PASSPHRASE=s3cr3tVALUE # c\n", "BORG_PASSPHRASE=s3cr3tVALUE\\x\n",
		"BORG_PASSPHRASE=\"s3cr3tVALUE\\n\"\n", "BORG_PASSPHRASE='s3cr3tVALUE' x\n",
	} {
		_, err := Parse("f", []byte(text))
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("%q: error %v", text, err)
		}
	}
}

func TestReadMissingAndMode(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(filepath.Join(dir, "none.env"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "none.env") {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(dir, "c.env")
	if err := os.WriteFile(p, []byte("BORG_PASSPHRASE=x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Mode != 0o640 || f.Line("BORG_PASSPHRASE") != 1 {
		t.Fatalf("mode %o line %d", f.Mode, f.Line("BORG_PASSPHRASE"))
	}
}
