package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/sirupsen/logrus"
)

// scratchPrefix names the hidden scratch directories a restore extracts into.
const scratchPrefix = ".cht-backup-restore-"

// ErrTargetNotEmpty marks a --target directory that holds something, without --force.
var ErrTargetNotEmpty = errors.New("target directory is not empty")

// TargetOptions say what to restore into which directory.
type TargetOptions struct {
	Source Source
	Dir    string
	// Force allows a non-empty Dir; what the layout would replace is moved aside, never deleted.
	Force bool
	Now   time.Time // for the names of moved-aside copies; zero means now
	Log   logrus.FieldLogger
}

// TargetResult is what a restore into a directory did.
type TargetResult struct {
	Repository      string            `json:"repository"`
	Archive         string            `json:"archive"`
	Dir             string            `json:"dir"`
	Placed          []Placement       `json:"placed"`
	MovedAside      []Move            `json:"moved_aside,omitempty"`
	Unsorted        []string          `json:"unsorted,omitempty"` // archive paths under Dir/unsorted/
	Skipped         []string          `json:"skipped,omitempty"`  // parts the backup left out
	Check           CheckResult       `json:"check"`
	Manifest        *sources.Manifest `json:"-"`
	DurationSeconds float64           `json:"duration_seconds"`
	// CompactionDropped are archive paths of compaction files in progress that the restore left
	// out, their live file being restored (see dropCompactionLeftovers).
	CompactionDropped []string `json:"compaction_dropped,omitempty"`
}

// ToTarget extracts the archive into o.Dir in the documented layout (see the package doc). It
// extracts into a scratch directory inside Dir and renames each part into place, so nothing is
// copied twice; the scratch directory is removed on every way out. The result includes a
// comparison of the laid-out files with the manifest.
func ToTarget(ctx context.Context, o TargetOptions) (*TargetResult, error) {
	start := time.Now()
	log := discard(o.Log)
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	stamp := o.Now.UTC().Format(StampFormat)
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	res := &TargetResult{Repository: o.Source.Repo.Raw, Archive: o.Source.Archive, Dir: dir}

	if err := checkTargetOwner(dir, dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("cannot create %s: %v", filepath.Dir(dir), unwrapPath(err))
		}
		// The copy holds .env secrets, the TLS key and health records: the owner alone may read it.
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create %s: %v", dir, unwrapPath(err))
		}
	case err != nil:
		return nil, fmt.Errorf("cannot use %s as the target: %v", dir, unwrapPath(err))
	default:
		if removed, _ := RemoveStaleScratch(dir, scratchPrefix); len(removed) > 0 {
			log.Warnf("removed scratch left by an earlier restore that was killed: %v", removed)
			entries, _ = os.ReadDir(dir)
		}
		if len(entries) > 0 && !o.Force {
			return nil, fmt.Errorf("%s is not empty (%d entries): %w", dir, len(entries), ErrTargetNotEmpty)
		}
		// The copy holds .env secrets, the TLS key and health records: the owner alone may enter.
		if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm() != 0o700 {
			if err := os.Chmod(dir, 0o700); err != nil {
				return nil, fmt.Errorf("cannot make %s private (mode 0700): %v", dir, unwrapPath(err))
			}
			log.Infof("%s was mode %04o; made it 0700 (the restored copy holds secrets)", dir, fi.Mode().Perm())
		}
	}

	scratch, err := NewScratch(dir, scratchPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := scratch.Close(); err != nil {
			log.Error(err)
		}
	}()
	probe, err := scratch.Sub("manifest")
	if err != nil {
		return nil, err
	}
	m, err := o.Source.FetchManifest(ctx, probe)
	if err != nil {
		return nil, err
	}
	res.Manifest = m
	for _, s := range m.Skipped {
		res.Skipped = append(res.Skipped, s.Reason)
	}
	if _, err := checkSpace(dir, archiveBytes(m)); err != nil {
		return nil, err
	}
	x, err := scratch.Sub("archive")
	if err != nil {
		return nil, err
	}
	log.Infof("extracting %s into %s", o.Source.Archive, dir)
	if err := o.Source.Extract(ctx, x); err != nil {
		return nil, err
	}
	items, dropped, err := o.Source.copyItems(ctx, m, x)
	if err != nil {
		return nil, err
	}
	res.CompactionDropped = dropped
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	for _, pl := range TargetLayout(m, dir) {
		from := filepath.Join(x, filepath.FromSlash(pl.From))
		if _, err := os.Lstat(from); err != nil {
			// Check reports what is missing; there is nothing to place.
			continue
		}
		if _, err := os.Lstat(pl.To); err == nil {
			mv, err := moveAside(pl.To, stamp)
			if err != nil {
				return res, err
			}
			res.MovedAside = append(res.MovedAside, mv)
		}
		if err := place(from, pl.To); err != nil {
			return res, err
		}
		if pl.Group == sources.GroupCouchDB {
			if err := applyOwner(pl.To, m.CouchDB.DataDir); err != nil {
				return res, err
			}
		}
		if pl.Group == sources.GroupEnv {
			// Cleartext secrets: 0600 whatever mode the host's file had.
			if err := os.Chmod(pl.To, 0o600); err != nil {
				return res, fmt.Errorf("cannot make %s private (mode 0600): %v", pl.To, unwrapPath(err))
			}
		}
		res.Placed = append(res.Placed, pl)
	}
	if left := leftovers(x); len(left) > 0 {
		to := filepath.Join(dir, "unsorted")
		if _, err := os.Lstat(to); err == nil {
			mv, err := moveAside(to, stamp)
			if err != nil {
				return res, err
			}
			res.MovedAside = append(res.MovedAside, mv)
		}
		if err := place(x, to); err != nil {
			return res, err
		}
		res.Unsorted = left
	}
	res.Check = Check(ctx, m, items, locator(res.Placed, ""))
	noteCompactionDropped(&res.Check, m, res.CompactionDropped)
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}
