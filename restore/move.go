package restore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cht-backup/cht-backup/sources"
)

// Move is one existing path a restore renamed out of the way.
type Move struct {
	From string `json:"from"` // where it was
	To   string `json:"to"`   // where it is now
}

// StampFormat is the UTC time in the names of moved-aside copies: <path>.before-restore-<stamp>.
const StampFormat = "20060102T150405Z"

// asideName is a free name for path moved aside.
func asideName(path, label, stamp string, taken map[string]bool) string {
	base := fmt.Sprintf("%s.%s-%s", path, label, stamp)
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) && !taken[name] {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// moveAside renames path to path.before-restore-<stamp> (or a free variant of it).
func moveAside(path, stamp string) (Move, error) {
	to := asideName(path, "before-restore", stamp, nil)
	if err := os.Rename(path, to); err != nil {
		return Move{}, fmt.Errorf("cannot move %s aside to %s: %v", path, to, unwrapPath(err))
	}
	return Move{From: path, To: to}, nil
}

// place moves from (in a scratch directory) to to, which must not exist: a restore never
// overwrites. A file crosses filesystems by copy, keeping mode, owner and times; a directory must
// be on the same filesystem (callers extract next to it).
func place(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("cannot put %s in place: something is already there", to)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %v", filepath.Dir(to), unwrapPath(err))
	}
	err := os.Rename(from, to)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("cannot move %s to %s: %v", from, to, unwrapPath(err))
	}
	fi, lerr := os.Lstat(from)
	if lerr != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("cannot move %s to %s: they are on different filesystems", from, to)
	}
	return copyFile(from, to, fi)
}

func copyFile(from, to string, fi fs.FileInfo) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create %s: %v", to, unwrapPath(err))
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("cannot write %s: %v", to, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %v", to, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := os.Chmod(to, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(to, fi.ModTime(), fi.ModTime())
}

// applyOwner gives a directory the mode and (as root) the owner the manifest recorded for it.
func applyOwner(dir string, o sources.FileOwner) error {
	if o.Mode == "" {
		return nil
	}
	mode, err := o.FileMode()
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 && o.UID >= 0 && o.GID >= 0 {
		if err := os.Lchown(dir, o.UID, o.GID); err != nil {
			return fmt.Errorf("cannot give %s its owner %d:%d: %v", dir, o.UID, o.GID, unwrapPath(err))
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("cannot give %s its mode %s: %v", dir, o.Mode, unwrapPath(err))
	}
	return nil
}

// leftovers lists the non-directories under dir.
func leftovers(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}
