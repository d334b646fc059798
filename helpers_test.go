package main

import (
	"os/exec"
	"strings"
)

// runWithPassphrase runs a plain borg command for test setup, passphrase in its environment
// (tests only; the tool itself never does this).
func runWithPassphrase(w *world, argv []string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append([]string{}, w.env...), "BORG_PASSPHRASE="+w.passphrase)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
