package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cht-backup/cht-backup/sources"
)

// Count is what an admin gets from `find -type f | wc -l`, `find -type d | wc -l` and `du -sb`.
type Count struct {
	Files int64 `json:"files"` // regular files and symlinks
	Dirs  int64 `json:"dirs"`
	Bytes int64 `json:"bytes"` // apparent size of the regular files
}

// GroupCheck is one group of files compared with the manifest.
type GroupCheck struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Skipped  bool     `json:"skipped,omitempty"` // the backup left this part out on request
	Line     string   `json:"line"`              // one line in plain words
	Manifest Count    `json:"manifest"`
	Restored Count    `json:"restored"`
	SHA256   int      `json:"sha256_checked"` // files whose checksum was compared
	Grew     bool     `json:"grew,omitempty"` // CouchDB wrote while the backup ran: more than counted
	Problems []string `json:"problems,omitempty"`
}

// CheckResult is a restored copy compared with its manifest.
type CheckResult struct {
	OK       bool         `json:"ok"`
	Groups   []GroupCheck `json:"groups"`
	Problems []string     `json:"problems,omitempty"` // every failure, one line each
}

// isCouchDBGroup: CouchDB runs during a backup and its files are append-only, so borg may read more
// than the manifest counted when it was written.
func isCouchDBGroup(name string) bool {
	return name == sources.GroupCouchDB || name == sources.GroupIndexes
}

// Check compares files on disk with the manifest: the sha256 of every small file, and per group
// the number of files and directories and their bytes. locate maps an archive path to the local
// path it was restored to. In CouchDB groups more files or bytes than counted is fine (and said);
// fewer is a failure. In the other groups anything but the same is a failure.
func Check(ctx context.Context, m *sources.Manifest, locate func(string) string) CheckResult {
	res := CheckResult{OK: true}
	// The restored CouchDB data's per-database inventory, taken once for both CouchDB groups.
	var inv *sources.CouchDBInventory
	var invErr error
	var taken bool
	restored := func() (*sources.CouchDBInventory, error) {
		if !taken {
			taken = true
			if data := locate(couchDBRoot(m)); data != "" {
				i, err := sources.InventoryCouchDB(ctx, data)
				inv, invErr = &i, err
			}
		}
		return inv, invErr
	}
	for _, g := range m.Groups {
		gc := checkGroup(ctx, m, g, locate, restored)
		if !gc.OK {
			res.OK = false
			for _, p := range gc.Problems {
				res.Problems = append(res.Problems, g.Name+": "+p)
			}
		}
		res.Groups = append(res.Groups, gc)
	}
	for _, s := range m.Skipped {
		res.Groups = append(res.Groups, GroupCheck{Name: s.Part, OK: true, Skipped: true, Line: "not in this archive (" + strings.TrimPrefix(s.Reason, s.Part+": ") + ")"})
	}
	for _, s := range m.Missing {
		res.Groups = append(res.Groups, GroupCheck{Name: s.Part, OK: true, Skipped: true, Line: "not in this archive, it could not be gathered (" + strings.TrimPrefix(s.Reason, s.Part+": ") + ")"})
	}
	if err := ctx.Err(); err != nil {
		res.OK = false
		res.Problems = append(res.Problems, "the comparison was interrupted")
	}
	return res
}

func checkGroup(ctx context.Context, m *sources.Manifest, g sources.Group, locate func(string) string, restored func() (*sources.CouchDBInventory, error)) GroupCheck {
	gc := GroupCheck{Name: g.Name, Manifest: Count{g.Files, g.Dirs, g.Bytes}}
	for _, p := range g.Paths {
		local := locate(p)
		if local == "" {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%s is not in the restored copy", p))
			continue
		}
		if err := countTree(ctx, local, &gc.Restored); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				gc.Problems = append(gc.Problems, fmt.Sprintf("%s is missing from the restored copy", p))
			} else {
				gc.Problems = append(gc.Problems, fmt.Sprintf("cannot read %s: %v", local, unwrapPath(err)))
			}
		}
	}

	// .env must be the file itself: an archive that holds only a symlink holds none of its secrets.
	if g.Name == sources.GroupEnv {
		for _, p := range g.Paths {
			if local := locate(p); local != "" {
				if fi, err := os.Lstat(local); err == nil && !fi.Mode().IsRegular() {
					gc.Problems = append(gc.Problems, fmt.Sprintf("%s in the archive is a %s, not the .env file: its secrets are not in this archive; make a new backup (it archives a symlink's content)", p, fileKind(fi.Mode())))
				}
			}
		}
	}

	// Checksums of the group's small files (like md5sum -c).
	var keys []string
	for k := range m.SHA256 {
		if underAny(k, g.Paths) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		sum, err := fileSHA256(locate(k))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			gc.Problems = append(gc.Problems, fmt.Sprintf("%s is missing", k))
		case err != nil:
			gc.Problems = append(gc.Problems, fmt.Sprintf("cannot read %s: %v", k, unwrapPath(err)))
		case sum != m.SHA256[k]:
			gc.Problems = append(gc.Problems, fmt.Sprintf("%s differs from the file that was backed up (sha256 mismatch)", k))
		}
		gc.SHA256++
	}

	want, got := gc.Manifest, gc.Restored
	if isCouchDBGroup(g.Name) {
		if got.Files < want.Files {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%d of %d files are missing", want.Files-got.Files, want.Files))
		}
		if got.Dirs < want.Dirs {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%d of %d directories are missing", want.Dirs-got.Dirs, want.Dirs))
		}
		if got.Bytes < want.Bytes {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%s fewer than counted at backup time (files were cut short)", sources.HumanBytes(want.Bytes-got.Bytes)))
		}
		gc.Grew = got.Files > want.Files || got.Bytes > want.Bytes || got.Dirs > want.Dirs
		gc.Problems = append(gc.Problems, checkDatabases(m, g.Name, restored)...)
	} else {
		if got.Files != want.Files {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%d files where the backup had %d", got.Files, want.Files))
		}
		if got.Dirs != want.Dirs {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%d directories where the backup had %d", got.Dirs, want.Dirs))
		}
		if got.Bytes != want.Bytes {
			gc.Problems = append(gc.Problems, fmt.Sprintf("%d bytes where the backup had %d", got.Bytes, want.Bytes))
		}
	}
	gc.OK = len(gc.Problems) == 0
	gc.Line = groupLine(gc)
	return gc
}

// groupLine says in one line what `ls -R | wc -l`, `du` and `md5sum -c` would have shown.
func groupLine(gc GroupCheck) string {
	got := fmt.Sprintf("%s, %s", plural(gc.Restored.Files, "file"), sources.HumanBytes(gc.Restored.Bytes))
	if gc.Restored.Dirs > 0 {
		got = fmt.Sprintf("%s in %s, %s", plural(gc.Restored.Files, "file"), plural(gc.Restored.Dirs, "directory"), sources.HumanBytes(gc.Restored.Bytes))
	}
	if !gc.OK {
		return fmt.Sprintf("%s: %s", got, strings.Join(gc.Problems, "; "))
	}
	var parts []string
	if gc.Grew {
		var more []string
		if d := gc.Restored.Files - gc.Manifest.Files; d > 0 {
			more = append(more, plural(d, "file"))
		}
		if d := gc.Restored.Bytes - gc.Manifest.Bytes; d > 0 {
			more = append(more, sources.HumanBytes(d))
		}
		if len(more) == 0 {
			more = append(more, plural(gc.Restored.Dirs-gc.Manifest.Dirs, "directory"))
		}
		parts = append(parts, fmt.Sprintf("%s more than counted when the backup began (CouchDB wrote while borg read; fine)", strings.Join(more, " and ")))
	} else {
		parts = append(parts, "as counted at backup time")
	}
	if gc.SHA256 > 0 {
		parts = append(parts, fmt.Sprintf("sha256 of %s match%s", plural(int64(gc.SHA256), "file"), map[bool]string{true: "es", false: ""}[gc.SHA256 == 1]))
	}
	return got + ": " + strings.Join(parts, ", ")
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// countTree counts like sources does: every directory (the root included), every non-directory as
// a file, and the apparent size of regular files. Symlinks are not followed.
func countTree(ctx context.Context, root string, c *Count) error {
	if _, err := os.Lstat(root); err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			c.Dirs++
			return nil
		}
		c.Files++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			c.Bytes += fi.Size()
		}
		return nil
	})
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

func fileSHA256(p string) (string, error) {
	if p == "" {
		return "", fs.ErrNotExist
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkDatabases names each database that lost shard files, view index files or bytes, so a
// failure says which database an admin would miss. restored is the restored data dir's inventory,
// counted by the same rules as at backup time (sources.InventoryCouchDB).
func checkDatabases(m *sources.Manifest, group string, restored func() (*sources.CouchDBInventory, error)) []string {
	if len(m.CouchDB.Databases) == 0 {
		return nil
	}
	inv, err := restored()
	if err != nil {
		return []string{err.Error()}
	}
	if inv == nil {
		return nil // the data dir is not in the restored copy; the group's own check says so
	}
	got := map[string]sources.Database{}
	for _, d := range inv.Databases {
		got[d.Name] = d
	}
	var problems []string
	for _, db := range m.CouchDB.Databases {
		c := got[db.Name]
		wantFiles, wantBytes, files, bytes, what := db.ShardFiles, db.Bytes, c.ShardFiles, c.Bytes, "shard files"
		if group == sources.GroupIndexes {
			wantFiles, wantBytes, files, bytes, what = db.ViewIndexFiles, db.ViewIndexBytes, c.ViewIndexFiles, c.ViewIndexBytes, "view index files"
		}
		if wantFiles == 0 {
			continue
		}
		switch {
		case files < wantFiles:
			problems = append(problems, fmt.Sprintf("database %s has %d of its %d %s", db.Name, files, wantFiles, what))
		case bytes < wantBytes:
			problems = append(problems, fmt.Sprintf("database %s: its %s hold %s fewer than at backup time", db.Name, what, sources.HumanBytes(wantBytes-bytes)))
		}
	}
	return problems
}
