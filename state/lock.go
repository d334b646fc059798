package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockFileName is the host run lock, under the state dir.
const LockFileName = "cht-backup.lock"

// lockPoll is how often a waiting run tries the lock again.
const lockPoll = 200 * time.Millisecond

// Holder is who holds (or last held) the host run lock, as recorded in the lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Job     string    `json:"job"`
	Started time.Time `json:"started"`
	Host    string    `json:"host,omitempty"`
}

func (h Holder) String() string {
	job := h.Job
	if job == "" {
		job = "unknown job"
	}
	s := fmt.Sprintf("pid %d (%s", h.PID, job)
	if !h.Started.IsZero() {
		s += fmt.Sprintf(", started %s", h.Started.Local().Format(time.RFC3339))
	}
	return s + ")"
}

// Lock is the held host run lock. The kernel (flock) is the authority on who holds it, so a run
// that dies, even by SIGKILL, releases it; the JSON record in the file only says who it is.
type Lock struct {
	f      *os.File
	Path   string
	Holder Holder
	// Stale is the record of an earlier holder that ended without releasing the lock (killed,
	// power loss); the lock was taken over from it. Nil when the lock was free and clean.
	Stale *Holder
}

// LockedError means another run held the lock for longer than this run would wait.
type LockedError struct {
	Path   string
	Holder *Holder // nil when the holder had not written its record yet
	Waited time.Duration
}

// ErrLocked matches every *LockedError with errors.Is.
var ErrLocked = errors.New("another cht-backup run holds the host lock")

func (e *LockedError) Error() string {
	who := "a run that has not recorded itself yet"
	if e.Holder != nil {
		who = e.Holder.String()
		if !e.Holder.Started.IsZero() {
			who += fmt.Sprintf(", running for %s", time.Since(e.Holder.Started).Round(time.Second))
		}
	}
	waited := "did not wait"
	if e.Waited > 0 {
		waited = "waited " + e.Waited.String()
	}
	return fmt.Sprintf("another cht-backup run holds the host lock %s: %s; %s", e.Path, who, waited)
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Acquire takes the host run lock <stateDir>/cht-backup.lock for job, waiting up to wait for
// another run to finish (0: do not wait). It fails with a *LockedError naming the holder when the
// wait runs out, and with ctx's error when ctx ends first.
func Acquire(ctx context.Context, stateDir, job string, wait time.Duration) (*Lock, error) {
	return AcquireNotify(ctx, stateDir, job, wait, nil)
}

// AcquireNotify is Acquire that calls waiting once, with the holder, when it has to wait, so the
// caller can say why nothing happens yet.
func AcquireNotify(ctx context.Context, stateDir, job string, wait time.Duration, waiting func(Holder)) (*Lock, error) {
	if err := MakeDir(stateDir); err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, LockFileName)
	// O_NOFOLLOW: a symlink planted here must not make root write elsewhere.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file %s: %w", path, unwrapPath(err))
	}
	start := time.Now()
	notified := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("cannot lock %s: %v", path, err)
		}
		holder := readHolder(f)
		waited := time.Since(start)
		if waited >= wait {
			f.Close()
			return nil, &LockedError{Path: path, Holder: holder, Waited: wait}
		}
		if !notified && waiting != nil && holder != nil {
			waiting(*holder)
			notified = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("stopped waiting for the host lock %s: %w", path, ctx.Err())
		case <-time.After(min(lockPoll, wait-waited)):
		}
	}

	l := &Lock{f: f, Path: path}
	// A record left in a lock nobody holds belongs to a run that never released it.
	if b, _ := readAll(f); len(bytes.TrimSpace(b)) > 0 {
		var prev Holder
		_ = json.Unmarshal(b, &prev)
		l.Stale = &prev
	}
	host, _ := os.Hostname()
	l.Holder = Holder{PID: os.Getpid(), Job: job, Started: time.Now().UTC().Truncate(time.Second), Host: host}
	b, _ := json.Marshal(l.Holder)
	if err := rewrite(f, append(b, '\n')); err != nil {
		l.Release()
		return nil, fmt.Errorf("cannot write lock file %s: %w", path, unwrapPath(err))
	}
	return l, nil
}

// Release clears the record and lets the next run in. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// The file stays: removing a flock file lets a waiter lock the old inode while a newcomer
	// locks a new one, and both would run.
	err := l.f.Truncate(0)
	if uerr := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN); err == nil {
		err = uerr
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// ReadHolder returns who holds the lock under stateDir now, from the record alone: a cleared
// record or a holder that is gone means nobody. It never touches the lock itself, so a probe
// such as `status` cannot make a run with --lock-wait 0 fail.
func ReadHolder(stateDir string) (*Holder, error) {
	f, err := os.OpenFile(filepath.Join(stateDir, LockFileName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := readHolder(f)
	if h == nil || !alive(h.PID) {
		return nil, nil
	}
	return h, nil
}

// alive reports whether a process with this pid exists (EPERM: it exists, owned by another user).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readHolder(f *os.File) *Holder {
	b, err := readAll(f)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var h Holder
	if json.Unmarshal(b, &h) != nil {
		return nil
	}
	return &h
}

func readAll(f *os.File) ([]byte, error) {
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
}

func rewrite(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}
