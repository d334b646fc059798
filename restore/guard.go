package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cht-backup/cht-backup/sources"
)

// ErrLiveTarget marks a --target DIR whose layout lands on this host's live CHT files.
var ErrLiveTarget = errors.New("target is a live CHT path")

// ErrTargetOwner marks a --target DIR that belongs to another user: whoever owns it could swap
// what the restore writes (secrets, health records) for links elsewhere.
var ErrTargetOwner = errors.New("target directory belongs to another user")

// targetParts are the names the --target layout creates or moves aside in DIR.
var targetParts = []string{"couchdb", "upgrade-service", "compose", "tls", "credentials", "unsorted", "manifest.json"}

// LiveClash names this host's live CHT path that a --target DIR restore would land on, or ""
// when there is none: DIR being the CHT dir or the CouchDB data dir, a path of DIR's layout
// (DIR/couchdb, DIR/upgrade-service, ...) being or holding a live one, or DIR lying inside the
// live CouchDB data. Paths are compared once symlinks are resolved, and existing directories
// also by device and inode, so a symlink or bind mount to the CHT dir is caught. The live paths
// come from the live .env when it can be read.
func LiveClash(chtDir, target string) string {
	t, err := filepath.Abs(target)
	if err != nil {
		return ""
	}
	cht, _ := filepath.Abs(chtDir)
	env, _ := sources.ParseEnvFile(filepath.Join(cht, "upgrade-service", ".env"))
	live := sources.ResolveHostPaths(cht, env)
	lives := []struct{ path, what string }{
		{live.CHTDir, "CHT directory " + live.CHTDir},
		{live.CouchDBData, "CouchDB data directory " + live.CouchDBData},
		{filepath.Dir(live.EnvFile), "upgrade-service directory " + filepath.Dir(live.EnvFile)},
		{live.ComposePath, "compose directory " + live.ComposePath},
	}
	rt := resolvePath(t)
	for _, l := range lives {
		rl := resolvePath(l.path)
		if rt == rl || sameDir(t, l.path) {
			return l.what
		}
		for _, name := range targetParts {
			p := filepath.Join(t, name)
			if within(rl, resolvePath(p)) || sameDir(p, l.path) {
				return l.what
			}
		}
	}
	if rd := resolvePath(live.CouchDBData); within(rt, rd) {
		return "CouchDB data directory " + live.CouchDBData
	}
	return ""
}

// within says whether path is dir or lies below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// sameDir says whether a and b both exist and are one directory (same device and inode).
func sameDir(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && fa.IsDir() && os.SameFile(fa, fb)
}

// resolvePath is path with the symlinks of its longest existing prefix resolved; the part that
// does not exist yet is appended as it is.
func resolvePath(path string) string {
	path = filepath.Clean(path)
	rest := ""
	for p := path; ; {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return path
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// checkTargetOwner refuses a target (the path given, a symlink there, or the directory it
// leads to) that another user owns.
func checkTargetOwner(given, dir string) error {
	uid := uint32(os.Geteuid())
	for _, c := range []struct {
		path   string
		follow bool
	}{{given, false}, {dir, true}} {
		var fi fs.FileInfo
		var err error
		if c.follow {
			fi, err = os.Stat(c.path)
		} else {
			fi, err = os.Lstat(c.path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot use %s as the target: %v", c.path, unwrapPath(err))
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid {
			return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d): %w", c.path, st.Uid, uid, ErrTargetOwner)
		}
	}
	return nil
}
