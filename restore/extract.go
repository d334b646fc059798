package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/sirupsen/logrus"
)

// ManifestPath is the archive path of the manifest in every archive backup makes.
const ManifestPath = sources.StagingName + "/" + sources.ManifestName

// Source is one archive of one repository, read through one borg runner.
type Source struct {
	Runner  *borg.Runner
	Repo    borg.Repository
	Archive string // an existing archive: resolve "latest" first
	// OnProgress gets borg's progress_percent events of whole-archive extractions; may be nil.
	OnProgress func(borg.Progress)
}

// ErrIncomplete marks an extraction borg finished with warnings: some files were not written.
var ErrIncomplete = errors.New("extraction incomplete")

// ErrNotCHTBackup marks an archive without a cht-backup manifest.
var ErrNotCHTBackup = errors.New("not an archive made by cht-backup")

// Extract runs borg extract of the archive (only paths, when given) into dir, which must exist.
// Owners are restored by number: uid 5984 is CouchDB's in its container, whatever this host calls
// it. A warning from borg (a file it could not write) is an error here: a restore is all or nothing.
func (s Source) Extract(ctx context.Context, dir string, paths ...string) error {
	progress := s.OnProgress != nil && len(paths) == 0
	call := borg.Call{
		Args: borg.ExtractArgs(s.Repo, s.Archive, borg.ExtractOptions{Paths: paths, Progress: progress, NumericIDs: true}),
		Dir:  dir,
	}
	if progress {
		call.OnProgress = s.OnProgress
	}
	res, err := s.Runner.Run(ctx, call)
	if err != nil {
		return err
	}
	if res.Warned {
		var msgs []string
		for _, w := range res.Warnings {
			if strings.Contains(w.Message, "never matched") {
				return fmt.Errorf("archive %s holds no %s: %w", s.Archive, strings.Join(paths, ", "), ErrNotCHTBackup)
			}
			msgs = append(msgs, w.Message)
		}
		more := ""
		if len(msgs) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(msgs)-1)
		}
		first := "borg exited with a warning"
		if len(msgs) > 0 {
			first = msgs[0]
		}
		return fmt.Errorf("borg extract could not write every file into %s: %s%s: %w", dir, first, more, ErrIncomplete)
	}
	return nil
}

// Items lists what borg archived (paths, types, sizes): the reference for files that CouchDB
// changed while borg read them, which the manifest could only count before.
func (s Source) Items(ctx context.Context) ([]borg.Item, error) {
	res, err := s.Runner.Run(ctx, borg.Call{Args: borg.ItemsArgs(s.Repo, s.Archive)})
	if err != nil {
		return nil, err
	}
	return borg.ParseItems(res.Stdout)
}

// FetchManifest extracts only the manifest into dir and reads it.
func (s Source) FetchManifest(ctx context.Context, dir string) (*sources.Manifest, error) {
	if err := s.Extract(ctx, dir, ManifestPath); err != nil {
		return nil, err
	}
	m, err := sources.ReadManifest(filepath.Join(dir, filepath.FromSlash(ManifestPath)))
	if err != nil {
		return nil, fmt.Errorf("archive %s: %v: %w", s.Archive, err, ErrNotCHTBackup)
	}
	return m, nil
}

// Scratch is a private directory (mode 0700) for one run's extracted files. Close removes it; it
// is safe to call more than once.
type Scratch struct {
	Dir  string
	once sync.Once
	err  error
}

// NewScratch creates parent (mode 0700 when it creates it) and in it a fresh directory named
// prefix + a run id + ".pid<pid>", so a later run can tell a dead run's leftovers from a live one.
func NewScratch(parent, prefix string) (*Scratch, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create %s: %v", parent, unwrapPath(err))
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s%s-%s.pid%d", prefix, time.Now().UTC().Format("20060102T150405Z"), hex.EncodeToString(b), os.Getpid())
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create scratch directory %s: %v", dir, unwrapPath(err))
	}
	// Mkdir's mode passes through the umask; 0700 is a promise (the copy holds secrets and PHI).
	if err := os.Chmod(dir, 0o700); err != nil {
		os.Remove(dir)
		return nil, err
	}
	return &Scratch{Dir: dir}, nil
}

// Sub creates a directory inside the scratch directory.
func (s *Scratch) Sub(name string) (string, error) {
	p := filepath.Join(s.Dir, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", fmt.Errorf("cannot create %s: %v", p, unwrapPath(err))
	}
	return p, nil
}

// Close removes the scratch directory and everything in it.
func (s *Scratch) Close() error {
	if s == nil {
		return nil
	}
	s.once.Do(func() { s.err = sources.RemoveTree(s.Dir, "scratch directory") })
	return s.err
}

// RemoveStaleScratch removes scratch directories in parent that start with prefix and belong to
// runs that no longer exist (killed, or the host lost power), and returns their paths.
func RemoveStaleScratch(parent, prefix string) ([]string, error) {
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndex(name, ".pid")
		if !strings.HasPrefix(name, prefix) || i < 0 {
			continue
		}
		pid, err := strconv.Atoi(name[i+4:])
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		p := filepath.Join(parent, name)
		if err := sources.RemoveTree(p, "scratch directory"); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ErrNoSpace marks a filesystem too small for what a restore must write.
var ErrNoSpace = errors.New("not enough free space")

// checkSpace fails when the filesystem holding dir (or its nearest existing parent) has less free
// space than need plus a margin for metadata.
func checkSpace(dir string, need int64) (free int64, err error) {
	p := dir
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return 0, fmt.Errorf("cannot read the free space of %s: %v", p, err)
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	want := need + need/20 + 16<<20
	if free < want {
		return free, fmt.Errorf("%s has %s free, but the archive needs about %s there: %w", p, sources.HumanBytes(free), sources.HumanBytes(want), ErrNoSpace)
	}
	return free, nil
}

// archiveBytes is what extracting the whole archive writes, as the manifest counted it.
func archiveBytes(m *sources.Manifest) int64 {
	var n int64
	for _, g := range m.Groups {
		n += g.Bytes
	}
	return n
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func discard(l logrus.FieldLogger) logrus.FieldLogger {
	if l != nil {
		return l
	}
	d := logrus.New()
	d.SetOutput(io.Discard)
	return d
}
