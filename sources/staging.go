package sources

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StagingName is the single path argument borg gets for the staged files,
// with the staging directory as its working directory: in the archive they
// sit under "cht-backup/".
const StagingName = "cht-backup"

// Staging is one run's private directory <stateDir>/staging/<run-id>/ (mode
// 0700). It holds only what has no file on the host: files copied out of
// containers, and the manifest. Never the CouchDB data.
type Staging struct {
	Dir string // the run's directory; borg runs in it

	once sync.Once
	err  error
}

// NewStaging creates <stateDir>/staging/<runID>/cht-backup/, every level it
// creates mode 0700; runID "" makes one from the time and a random suffix.
func NewStaging(stateDir, runID string) (*Staging, error) {
	if stateDir == "" {
		return nil, fmt.Errorf("no state directory given for staging; set --state-dir")
	}
	if runID == "" {
		runID = NewRunID(time.Now())
	}
	parent := filepath.Join(stateDir, "staging")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, stagingError(parent, err)
	}
	dir := filepath.Join(parent, runID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, stagingError(dir, err)
	}
	s := &Staging{Dir: dir}
	// Mkdir's mode is filtered by the umask; 0700 is a promise, so set it.
	if err := os.Chmod(dir, 0o700); err != nil {
		s.Close()
		return nil, err
	}
	if err := os.Mkdir(s.Root(), 0o700); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// stagingError says why a staging directory cannot be made: a full disk by name, since a
// permissions hint would send the admin the wrong way.
func stagingError(dir string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("cannot create staging directory %s: %w; the disk holding --state-dir is full: free space there (df -h %s)", dir, unwrapPathError(err), filepath.Dir(dir))
	}
	return fmt.Errorf("cannot create staging directory %s: %w; check --state-dir and its permissions", dir, unwrapPathError(err))
}

// NewRunID names a run after its UTC start time plus a random suffix, so
// that two runs never share a staging directory.
func NewRunID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Root is the directory archived as "cht-backup".
func (s *Staging) Root() string { return filepath.Join(s.Dir, StagingName) }

// Close removes the staging directory and everything in it. It is safe to
// call more than once and from a signal handler's goroutine; later calls
// return the first call's result.
func (s *Staging) Close() error {
	if s == nil {
		return nil
	}
	s.once.Do(func() { s.err = RemoveTree(s.Dir, "staging directory") })
	return s.err
}

// RemoveTree removes dir (what names it in the error), first opening up read-only directories
// (copied out of a container, or extracted from an archive) that stop RemoveAll for a non-root
// user.
func RemoveTree(dir, what string) error {
	err := os.RemoveAll(dir)
	if err != nil {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("cannot remove %s %s: %v; remove it by hand", what, dir, err)
	}
	return nil
}

// RemoveStaleStaging removes staging directories left behind by runs that
// were killed (SIGKILL, power loss) and returns their paths. Call it only
// while holding the run lock, or it would remove a running backup's files.
func RemoveStaleStaging(stateDir string) ([]string, error) {
	parent := filepath.Join(stateDir, "staging")
	entries, err := os.ReadDir(parent)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		p := filepath.Join(parent, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("cannot remove stale staging directory %s: %v; remove it by hand", p, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}
