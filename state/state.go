package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FileName is the state file, under the state dir.
const FileName = "state.json"

// formatVersion is the state file's format; a newer tool may read an older file.
const formatVersion = 1

// Jobs whose runs are recorded.
const (
	JobBackup  = "backup"
	JobCheck   = "check"
	JobVerify  = "verify"
	JobRestore = "restore"
	JobPrune   = "prune"
)

// Status is how a run ended for one repository.
type Status string

const (
	StatusOK      Status = "ok"
	StatusWarning Status = "warning" // finished, with something to say (exit 1): the archive exists
	StatusFailed  Status = "failed"
	// StatusPartial: the archive was written but lacks parts that could not be gathered (Docker
	// down, a container missing); Missing says which. Not a success: exit 2.
	StatusPartial Status = "partial"
)

// Limits that keep the state file small whatever borg reports.
const (
	maxWarnings  = 20
	maxLineBytes = 1000
)

// Outcome is what one run of a job gave for one repository. Its size fields carry the same names
// as the backup summary's, so a backup maps onto it field by field.
type Outcome struct {
	Job        string    `json:"job"`
	Repository string    `json:"repository"`
	Status     Status    `json:"status"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"` // one line
	Hint       string    `json:"hint,omitempty"`  // what to do next, one line
	Warnings   []string  `json:"warnings,omitempty"`

	// Backups (and restores, verifies) name an archive; backups also give its sizes.
	Archive          string `json:"archive,omitempty"`
	OriginalSize     int64  `json:"original_size,omitempty"`
	CompressedSize   int64  `json:"compressed_size,omitempty"`
	DeduplicatedSize int64  `json:"deduplicated_size,omitempty"`
	Files            int64  `json:"files,omitempty"`

	// Archives is how many archives the repository held, when the job learnt it; 0: not known.
	Archives int `json:"archives,omitempty"`

	// Usage is the repository's size and free space, when a backup could tell; Record keeps a
	// history of them for the growth estimate.
	Usage *UsageSample `json:"usage,omitempty"`
	// Unreadable is how many files borg could not read (permission denied, I/O error): the
	// archive lacks them and the run failed. Files that changed or vanished while read are
	// Warnings, not this.
	Unreadable int `json:"unreadable_files,omitempty"`
	// Missing are the parts a backup could not gather, one line each saying why.
	Missing []string `json:"missing,omitempty"`

	// CouchDB is the CouchDB drill of a verify or in-place restore, when one was tried.
	CouchDB *CouchDBDrill `json:"couchdb,omitempty"`
}

// Duration is how long the run took for this repository.
func (o Outcome) Duration() time.Duration {
	if o.End.Before(o.Start) {
		return 0
	}
	return o.End.Sub(o.Start)
}

// Succeeded reports whether the run did its work (ok, or finished with warnings).
func (o Outcome) Succeeded() bool { return o.Status == StatusOK || o.Status == StatusWarning }

// Entry is one job's record for one repository.
type Entry struct {
	Job         string   `json:"job"`
	Repository  string   `json:"repository"`
	LastRun     Outcome  `json:"last_run"`
	LastSuccess *Outcome `json:"last_success,omitempty"`
}

// File is the whole state file.
type File struct {
	Version int       `json:"version"`
	Updated time.Time `json:"updated"`
	Entries []Entry   `json:"entries"`
	// Usage is each repository's size history, oldest first (see Growth).
	Usage map[string][]UsageSample `json:"usage,omitempty"`
	// Counts are archive counts learnt outside a recorded job (`archives` lists them anyway).
	Counts map[string]CountSample `json:"archive_counts,omitempty"`
	// ServerKeys says, by SSH login (see ServerKey), whether the server forces the key to borg
	// serve.
	ServerKeys map[string]ServerKey `json:"server_keys,omitempty"`
}

// CountSample is how many archives a repository held, and when that was learnt.
type CountSample struct {
	Archives int       `json:"archives"`
	Time     time.Time `json:"time"`
}

// Path is the state file under stateDir.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// CorruptError means the state file could not be read as JSON.
type CorruptError struct {
	Path     string
	SetAside string // where Record moved it, when it did
	Err      error
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("state file %s is damaged (%v)", e.Path, e.Err)
	if e.SetAside != "" {
		s += fmt.Sprintf("; it was moved to %s and a new one started", e.SetAside)
	}
	return s
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Load reads the state file under stateDir. A missing file is an empty state, not an error.
func Load(stateDir string) (*File, error) {
	path := Path(stateDir)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &File{Version: formatVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read state file %s: %v", path, unwrapPath(err))
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	return &f, nil
}

// DirMode is the state directory's mode: others may pass through it but not list it, so a
// monitoring user (node_exporter's textfile collector, a status probe) can read state.json (0644)
// and metrics/ (0755) by path. What is secret below it (keys/, staging/, verify/, restore/ and
// the lock) is 0700 or 0600 of its own.
const DirMode = 0o711

// MakeDir creates the state directory with DirMode when it is missing.
func MakeDir(stateDir string) error {
	if _, err := os.Stat(stateDir); err == nil {
		return nil
	}
	if err := os.MkdirAll(stateDir, DirMode); err != nil {
		return fmt.Errorf("cannot create state directory %s: %w", stateDir, unwrapPath(err))
	}
	return os.Chmod(stateDir, DirMode) // MkdirAll's mode is filtered by the umask
}

// Record adds outcomes to the state file under stateDir and returns the new state. The caller
// holds the host run lock, which makes the read-modify-write safe. A damaged state file is set
// aside as state.json.damaged-<UTC time> (an earlier one is kept) and replaced: Record then returns the new state and a
// *CorruptError saying so, which the caller logs.
func Record(stateDir string, outcomes ...Outcome) (*File, error) {
	if err := MakeDir(stateDir); err != nil {
		return nil, err
	}
	defer lockStateFile(stateDir)()
	f, err := Load(stateDir)
	var damaged *CorruptError
	if errors.As(err, &damaged) {
		damaged.SetAside = freeName(Path(stateDir) + ".damaged-" + time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(damaged.Path, damaged.SetAside); rerr != nil {
			return nil, fmt.Errorf("%v, and it cannot be moved aside: %v", damaged, unwrapPath(rerr))
		}
		f, err = &File{Version: formatVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, o := range outcomes {
		f.apply(o)
	}
	if werr := f.write(stateDir); werr != nil {
		return nil, werr
	}
	if damaged != nil {
		return f, damaged
	}
	return f, nil
}

func (f *File) apply(o Outcome) {
	o = Complete(o)
	e := f.Find(o.Job, o.Repository)
	if e == nil {
		f.Entries = append(f.Entries, Entry{Job: o.Job, Repository: o.Repository})
		e = &f.Entries[len(f.Entries)-1]
	}
	e.LastRun = o
	if o.Usage != nil {
		f.addUsage(o.Repository, *o.Usage)
	}
	if o.Succeeded() {
		s := o
		e.LastSuccess = &s
	}
	sort.SliceStable(f.Entries, func(i, j int) bool {
		if f.Entries[i].Repository != f.Entries[j].Repository {
			return f.Entries[i].Repository < f.Entries[j].Repository
		}
		return f.Entries[i].Job < f.Entries[j].Job
	})
}

// Complete fills what the caller left out (status from the error and warnings, times, exit code)
// and keeps lines short. Record applies it; callers that show outcomes apply it first.
func Complete(o Outcome) Outcome {
	if o.Status == "" {
		switch {
		case o.Error != "":
			o.Status = StatusFailed
		case len(o.Missing) > 0:
			o.Status = StatusPartial
		case len(o.Warnings) > 0:
			o.Status = StatusWarning
		default:
			o.Status = StatusOK
		}
	}
	if o.End.IsZero() {
		o.End = time.Now()
	}
	if o.Start.IsZero() {
		o.Start = o.End
	}
	o.Start, o.End = o.Start.UTC(), o.End.UTC()
	switch {
	case o.Status == StatusWarning && o.ExitCode == 0:
		o.ExitCode = 1
	case (o.Status == StatusFailed || o.Status == StatusPartial) && o.ExitCode < 2:
		o.ExitCode = 2
	}
	o.Error = oneLine(o.Error)
	o.Hint = oneLine(o.Hint)
	o.Warnings = append([]string(nil), o.Warnings...) // never the caller's array
	if len(o.Warnings) > maxWarnings {
		more := len(o.Warnings) - (maxWarnings - 1)
		o.Warnings = append(append([]string{}, o.Warnings[:maxWarnings-1]...), fmt.Sprintf("... and %d more", more))
	}
	for i, w := range o.Warnings {
		o.Warnings[i] = oneLine(w)
	}
	o.Missing = append([]string(nil), o.Missing...)
	for i, m := range o.Missing {
		o.Missing[i] = oneLine(m)
	}
	return o
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxLineBytes {
		s = s[:maxLineBytes] + "…"
	}
	return s
}

// Find returns the entry of job for repository, or nil.
func (f *File) Find(job, repository string) *Entry {
	for i := range f.Entries {
		if f.Entries[i].Job == job && f.Entries[i].Repository == repository {
			return &f.Entries[i]
		}
	}
	return nil
}

// Repositories lists every repository the state knows, sorted.
func (f *File) Repositories() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range f.Entries {
		if !seen[e.Repository] {
			seen[e.Repository] = true
			out = append(out, e.Repository)
		}
	}
	sort.Strings(out)
	return out
}

// ArchiveCount is the most recently learnt number of archives in repository, and when it was
// learnt; ok is false when no job has counted them.
func (f *File) ArchiveCount(repository string) (n int, at time.Time, ok bool) {
	for _, e := range f.Entries {
		if e.Repository != repository {
			continue
		}
		for _, o := range []*Outcome{&e.LastRun, e.LastSuccess} {
			if o != nil && o.Archives > 0 && o.End.After(at) {
				n, at, ok = o.Archives, o.End, true
			}
		}
	}
	if c, found := f.Counts[repository]; found && c.Time.After(at) {
		n, at, ok = c.Archives, c.Time, true
	}
	return n, at, ok
}

// RecordArchiveCount keeps a repository's archive count learnt by a command that is no recorded
// job, so `status` and the next backup's count start from it.
func RecordArchiveCount(stateDir, repository string, archives int, at time.Time) error {
	return update(stateDir, func(f *File) {
		if f.Counts == nil {
			f.Counts = map[string]CountSample{}
		}
		f.Counts[repository] = CountSample{Archives: archives, Time: at.UTC()}
	})
}

// update applies change to the state file under its lock, outside a recorded job.
func update(stateDir string, change func(*File)) error {
	if err := MakeDir(stateDir); err != nil {
		return err
	}
	defer lockStateFile(stateDir)()
	f, err := Load(stateDir)
	if err != nil {
		return err // a damaged state file is set aside by the next recorded job, not here
	}
	change(f)
	return f.write(stateDir)
}

// write replaces the state file with f. The caller holds the state file's lock.
func (f *File) write(stateDir string) error {
	f.Version = formatVersion
	f.Updated = time.Now().UTC()
	// The file says nothing secret, and a monitoring user may read it for `status`.
	return WriteFileAtomic(Path(stateDir), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(f)
	})
}

// lockStateFile serialises the read-modify-write of the state file between processes: a job
// holds the host lock while it records, but `archives` keeps a count without it, and neither
// may write back a state that lacks the other's update. When the lock file cannot be made (a
// full or read-only disk) the write goes ahead unlocked: recording an outcome matters more,
// and the write itself says what is wrong.
func lockStateFile(stateDir string) (unlock func()) {
	f, err := os.OpenFile(Path(stateDir)+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return func() {}
	}
	return func() { f.Close() }
}

// freeName is name, or name-2, name-3, ... when that is taken: evidence is never overwritten.
func freeName(name string) string {
	for i, n := 2, name; ; i++ {
		if _, err := os.Lstat(n); errors.Is(err, fs.ErrNotExist) {
			return n
		}
		n = fmt.Sprintf("%s-%d", name, i)
	}
}
