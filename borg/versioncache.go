package borg

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// `borg --version` costs about half a second of Python start-up on every run. The answer only
// changes when the borg binary does, so it is kept in a small file keyed by what identifies the
// binary on disk.

// BinaryKey identifies one borg binary on disk: its resolved path and what a reinstall or an
// upgrade changes (size, modification and change time, inode).
type BinaryKey struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	MtimeNano int64  `json:"mtime_ns"`
	CtimeNano int64  `json:"ctime_ns"`
	Inode     uint64 `json:"inode"`
}

// versionCacheEntry is the cache file's content.
type versionCacheEntry struct {
	Key     BinaryKey `json:"key"`
	Version string    `json:"version"`
}

// BinaryKeyOf resolves bin (a name looked up in PATH, or a path) through symlinks and reads its key.
func BinaryKeyOf(bin string) (BinaryKey, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return BinaryKey{}, err
	}
	if p, err = filepath.Abs(p); err != nil {
		return BinaryKey{}, err
	}
	if p, err = filepath.EvalSymlinks(p); err != nil {
		return BinaryKey{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return BinaryKey{}, err
	}
	k := BinaryKey{Path: p, Size: fi.Size(), MtimeNano: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.CtimeNano = st.Ctim.Nano()
		k.Inode = st.Ino
	}
	return k, nil
}

// cachedVersion returns the version recorded in file for key, if the file holds that key.
func cachedVersion(file string, key BinaryKey) (Version, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Version{}, false
	}
	var e versionCacheEntry
	if json.Unmarshal(b, &e) != nil || e.Key != key {
		return Version{}, false
	}
	v, err := ParseVersion(e.Version)
	if err != nil {
		return Version{}, false
	}
	return v, true
}

// storeVersion records v for key in file, replacing the file atomically. The file's directory
// must exist: the cache never creates the state directory (that has its own mode rules).
func storeVersion(file string, key BinaryKey, v Version) error {
	b, err := json.Marshal(versionCacheEntry{Key: key, Version: v.String()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".borg-version-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// DetectVersionCached is DetectVersion that asks borg only when cacheFile does not already hold
// the version of this very binary; it then records the answer. A cache that cannot be read or
// written only costs the `borg --version` it would have saved.
func (r *Runner) DetectVersionCached(ctx context.Context, cacheFile string) (Version, error) {
	if cacheFile == "" {
		return r.DetectVersion(ctx)
	}
	key, err := BinaryKeyOf(r.binary())
	if err != nil {
		return r.DetectVersion(ctx) // says plainly that borg is missing
	}
	if v, ok := cachedVersion(cacheFile, key); ok {
		if err := CheckSupported(v); err != nil {
			return v, err
		}
		r.Version = v
		return v, nil
	}
	v, err := r.DetectVersion(ctx)
	if err != nil {
		return v, err
	}
	if err := storeVersion(cacheFile, key, v); err != nil {
		r.Log.Debugf("borg version not cached in %s: %v", cacheFile, err)
	}
	return v, nil
}
