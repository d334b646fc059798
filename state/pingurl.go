package state

import (
	"io"
	"os"
	"path/filepath"
	"strings"
)

// PingURLFile keeps the health-check URL of the last run whose settings could be read, so that
// a run that cannot read its config file (removed, or refused) can still ping its failure. The
// URL may hold a token: the file is 0600.
const PingURLFile = "healthcheck-url"

// RememberPingURL records url for RememberedPingURL; an empty url forgets it. Errors are the
// caller's to log: they never change a job's result.
func RememberPingURL(stateDir, url string) error {
	path := filepath.Join(stateDir, PingURLFile)
	if url == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == url+"\n" {
		return nil
	}
	return WriteFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := io.WriteString(w, url+"\n")
		return err
	})
}

// RememberedPingURL is the URL RememberPingURL recorded, or "".
func RememberedPingURL(stateDir string) string {
	b, err := os.ReadFile(filepath.Join(stateDir, PingURLFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
