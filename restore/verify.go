package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/sirupsen/logrus"
)

// verifyPrefix names the drill's scratch directories under <state-dir>/verify/.
const verifyPrefix = "drill-"

// VerifyOptions say which archive to drill and where its scratch space goes.
type VerifyOptions struct {
	Source   Source
	StateDir string // scratch space is <StateDir>/verify/ (mode 0700)
	// CouchDB says whether to start CouchDB on the extracted copy (see DrillCouchDB).
	CouchDB DrillOptions
	Log     logrus.FieldLogger
}

// VerifyResult is one restore drill: the verdict, one line per group, and how long it took. It is
// a plain value so callers can record it (state file, metrics) as well as print it.
type VerifyResult struct {
	Repository      string        `json:"repository"`
	Archive         string        `json:"archive"`
	OK              bool          `json:"ok"`
	Reason          string        `json:"reason,omitempty"` // why it failed, in plain words
	Groups          []GroupCheck  `json:"groups"`
	CouchDB         *CouchDBDrill `json:"couchdb,omitempty"` // CouchDB started on the copy; nil when the files already failed
	Files           int64         `json:"files"`             // files restored and compared
	Bytes           int64         `json:"bytes"`
	Started         time.Time     `json:"started"`
	Duration        time.Duration `json:"-"`
	DurationSeconds float64       `json:"duration_seconds"`
	Err             error         `json:"-"` // the underlying error when the drill could not finish
	// CompactionDropped are archive paths of compaction files in progress that the drill left
	// out, as a restore does (see dropCompactionLeftovers).
	CompactionDropped []string `json:"compaction_dropped,omitempty"`
	// ArchiveCount is how many archives the repository held when the archive was looked up
	// (the caller's listing); 0 when not known.
	ArchiveCount int `json:"archive_count,omitempty"`
}

// Verify is the restore drill: it extracts the whole archive into fresh scratch space under
// <StateDir>/verify/, compares it with the archive's manifest (see Check), and removes the scratch
// space again on every way out (a cancelled ctx included). A damaged archive makes borg extract
// fail; that is reported as the reason.
func Verify(ctx context.Context, o VerifyOptions) (res VerifyResult) {
	start := time.Now()
	log := discard(o.Log)
	res = VerifyResult{Repository: o.Source.Repo.Raw, Archive: o.Source.Archive, Started: start.UTC()}
	defer func() {
		res.Duration = time.Since(start)
		res.DurationSeconds = res.Duration.Seconds()
		if res.Err != nil && res.Reason == "" {
			res.Reason = reasonOf(res.Err)
		}
		res.OK = res.Err == nil && res.Reason == ""
	}()
	if o.StateDir == "" {
		res.Err = errors.New("no state directory for the drill's scratch space; set --state-dir")
		return res
	}
	parent := filepath.Join(o.StateDir, "verify")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		res.Err = fmt.Errorf("cannot create %s: %v", parent, unwrapPath(err))
		return res
	}
	_ = os.Chmod(parent, 0o700)
	if removed, err := RemoveStaleScratch(parent, verifyPrefix); err != nil {
		log.Warn(err)
	} else if len(removed) > 0 {
		log.Warnf("removed scratch space left by an earlier drill that was killed: %s", strings.Join(removed, ", "))
	}
	scratch, err := NewScratch(parent, verifyPrefix)
	if err != nil {
		res.Err = err
		return res
	}
	defer func() {
		if err := scratch.Close(); err != nil {
			log.Error(err)
			if res.Err == nil {
				res.Err = err
			}
		}
	}()

	probe, err := scratch.Sub("manifest")
	if err != nil {
		res.Err = err
		return res
	}
	m, err := o.Source.FetchManifest(ctx, probe)
	if err != nil {
		res.Err = err
		return res
	}
	if _, err := checkSpace(parent, archiveBytes(m)); err != nil {
		res.Err = err
		return res
	}
	x, err := scratch.Sub("archive")
	if err != nil {
		res.Err = err
		return res
	}
	log.Infof("restore drill: extracting %s into %s", o.Source.Archive, x)
	if err := o.Source.Extract(ctx, x); err != nil {
		res.Err = err
		return res
	}
	items, dropped, err := o.Source.copyItems(ctx, m, x)
	if err != nil {
		res.Err = err
		return res
	}
	res.CompactionDropped = dropped
	c := Check(ctx, m, items, func(p string) string { return filepath.Join(x, filepath.FromSlash(p)) })
	noteCompactionDropped(&c, m, res.CompactionDropped)
	res.Groups = c.Groups
	for _, g := range c.Groups {
		res.Files += g.Restored.Files
		res.Bytes += g.Restored.Bytes
	}
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return res
	}
	if !c.OK {
		res.Reason = fmt.Sprintf("the restored copy differs from what was backed up: %s", strings.Join(c.Problems, "; "))
		return res
	}
	// The scratch copy is removed afterwards, so the drill may change it.
	if o.CouchDB.Log == nil {
		o.CouchDB.Log = log
	}
	res.CouchDB = DrillCouchDB(ctx, o.CouchDB, m, filepath.Join(x, filepath.FromSlash(couchDBRoot(m))))
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return res
	}
	if !res.CouchDB.OK() {
		res.Reason = res.CouchDB.Reason
	}
	return res
}

// reasonOf says in plain words why a drill could not finish.
func reasonOf(err error) string {
	var be *borg.Error
	msg := err.Error()
	if errors.As(err, &be) && be.Message != "" {
		msg = be.Message
	}
	switch {
	case errors.Is(err, borg.ErrIntegrity):
		return fmt.Sprintf("the archive is damaged: borg extract stopped on an integrity error (%s)", msg)
	case errors.Is(err, borg.ErrCancelled), errors.Is(err, context.Canceled):
		return "the drill was interrupted before it finished"
	}
	return err.Error()
}
