package borg

import "testing"

// A passphrase is taken as plain borg takes it from a file or BORG_PASSCOMMAND: only the line
// ending goes, so a passphrase that ends or starts in spaces still opens the repository.
func TestNewSecretKeepsSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"correct horse\n":     "correct horse",
		"  padded both  \n":   "  padded both  ",
		"trailing tab\t\r\n":  "trailing tab\t",
		"no newline at all  ": "no newline at all  ",
	} {
		if got := string(NewSecret(in).b); got != want {
			t.Errorf("NewSecret(%q) = %q, want %q", in, got, want)
		}
	}
}
