package sources

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// untar unpacks a tar stream whose entries all lie under the directory top
// into dest (top itself becomes dest). Only directories, regular files,
// symlinks and hard links are accepted. Nothing is written outside dest:
// names with ".." or a leading "/" are refused, no entry is written through
// a symlink (a symlink is stored as a link, never followed), and hard links
// must point at a file already unpacked. Permission bits, owners (when
// running as root) and modification times are kept.
func untar(r io.Reader, dest, top string) error {
	if err := os.Mkdir(dest, 0o700); err != nil {
		return err
	}
	type dirMeta struct {
		path  string
		mode  fs.FileMode
		mtime time.Time
	}
	var dirs []dirMeta
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("corrupt archive stream: %w", err)
		}
		rel, err := relEntry(h.Name, top)
		if err != nil {
			return err
		}
		target := filepath.Join(dest, filepath.FromSlash(rel))
		if err := noSymlinkBetween(dest, rel); err != nil {
			return err
		}
		mode := h.FileInfo().Mode().Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if rel != "." {
				if err := os.Mkdir(target, 0o700); err != nil && !isExistingDir(target, err) {
					return err
				}
			}
			dirs = append(dirs, dirMeta{target, mode, h.ModTime})
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old engines may still write TypeRegA
			if rel == "." {
				return fmt.Errorf("entry %q: expected a directory", h.Name)
			}
			if err := writeFile(target, tr, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if rel == "." {
				return fmt.Errorf("entry %q: expected a directory", h.Name)
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			lrel, err := relEntry(h.Linkname, top)
			if err != nil {
				return fmt.Errorf("hard link %q: %w", h.Name, err)
			}
			if err := noSymlinkBetween(dest, lrel); err != nil {
				return err
			}
			src := filepath.Join(dest, filepath.FromSlash(lrel))
			if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("hard link %q points at %q, which is not a file unpacked before it", h.Name, h.Linkname)
			}
			if err := os.Link(src, target); err != nil {
				return err
			}
			continue // owner and times belong to the linked file
		default:
			return fmt.Errorf("entry %q has unsupported type %q (only files, directories and symlinks are copied)", h.Name, string(h.Typeflag))
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil && !errors.Is(err, syscall.EPERM) {
			return err
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA { //nolint:staticcheck
			// Lchown as root clears set-id bits; the mode is set again after it.
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
			if err := os.Chtimes(target, h.ModTime, h.ModTime); err != nil {
				return err
			}
		}
	}
	// Directory modes and times last: a read-only directory must still take
	// its entries, and creating them changed its time.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
		if err := os.Chtimes(dirs[i].path, dirs[i].mtime, dirs[i].mtime); err != nil {
			return err
		}
	}
	return nil
}

// relEntry turns a tar entry name into a path relative to top, refusing
// anything that would leave it.
func relEntry(name, top string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("entry %q: absolute or empty name refused", name)
	}
	for _, part := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: name leaving the copied directory refused", name)
		}
	}
	n = path.Clean(n)
	switch {
	case n == top:
		return ".", nil
	case strings.HasPrefix(n, top+"/"):
		return n[len(top)+1:], nil
	}
	return "", fmt.Errorf("entry %q lies outside %q", name, top)
}

// noSymlinkBetween fails when a parent of dest/rel below dest is a symlink
// or not a directory, so that nothing is written through a link.
func noSymlinkBetween(dest, rel string) error {
	if rel == "." {
		return nil
	}
	parts := strings.Split(rel, "/")
	p := dest
	for _, part := range parts[:len(parts)-1] {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("entry %q: parent directory %q not unpacked before it", rel, part)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("entry %q would be written through symlink %q; refused", rel, part)
		}
		if !fi.IsDir() {
			return fmt.Errorf("entry %q: parent %q is not a directory", rel, part)
		}
	}
	return nil
}

func isExistingDir(p string, err error) bool {
	if !errors.Is(err, fs.ErrExist) {
		return false
	}
	fi, lerr := os.Lstat(p)
	return lerr == nil && fi.IsDir()
}

func writeFile(target string, r io.Reader, mode fs.FileMode) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(target, mode)
}
