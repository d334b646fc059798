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

	"github.com/cht-backup/cht-backup/borg"
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
	Skipped  bool     `json:"skipped,omitempty"`  // the backup left this part out on request
	Line     string   `json:"line"`               // one line in plain words
	Manifest Count    `json:"manifest"`           // counted when the backup began
	Archived *Count   `json:"archived,omitempty"` // CouchDB groups: what borg's item list says it archived
	Restored Count    `json:"restored"`
	SHA256   int      `json:"sha256_checked"` // files whose checksum was compared
	Grew     bool     `json:"grew,omitempty"` // CouchDB wrote while the backup ran: more than counted
	Problems []string `json:"problems,omitempty"`
	Notes    []string `json:"notes,omitempty"` // reported, not failures (a database CouchDB deleted during the backup)
}

// CheckResult is a restored copy compared with its manifest.
type CheckResult struct {
	OK       bool         `json:"ok"`
	Groups   []GroupCheck `json:"groups"`
	Problems []string     `json:"problems,omitempty"` // every failure, one line each
}

// isCouchDBGroup: CouchDB writes and compacts while borg reads, so its files' figures counted
// before `borg create` are no reference; what borg archived is.
func isCouchDBGroup(name string) bool {
	return name == sources.GroupCouchDB || name == sources.GroupIndexes
}

// Check compares files on disk with the archive. Files that do not change (.env, compose, TLS,
// credentials) must match the manifest exactly: sha256 of each, and per group the number of files
// and directories and their bytes. CouchDB's files are judged against archived, borg's own item
// list of the archive: every item must be in the copy, each file at the size borg archived, and
// each database must have the shard and view index files the archive has. A database whose shard
// files were all gone from the archive (CouchDB deleted it while borg read) is a note, not a
// failure. locate maps an archive path to the local path it was restored to.
func Check(ctx context.Context, m *sources.Manifest, archived []borg.Item, locate func(string) string) CheckResult {
	res := CheckResult{OK: true}
	for _, g := range m.Groups {
		var gc GroupCheck
		if isCouchDBGroup(g.Name) {
			gc = checkCouchDBGroup(ctx, m, g, archived, locate)
		} else {
			gc = checkGroup(ctx, m, g, locate)
		}
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

func checkGroup(ctx context.Context, m *sources.Manifest, g sources.Group, locate func(string) string) GroupCheck {
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
	if got.Files != want.Files {
		gc.Problems = append(gc.Problems, fmt.Sprintf("%d files where the backup had %d", got.Files, want.Files))
	}
	if got.Dirs != want.Dirs {
		gc.Problems = append(gc.Problems, fmt.Sprintf("%d directories where the backup had %d", got.Dirs, want.Dirs))
	}
	if got.Bytes != want.Bytes {
		gc.Problems = append(gc.Problems, fmt.Sprintf("%d bytes where the backup had %d", got.Bytes, want.Bytes))
	}
	gc.OK = len(gc.Problems) == 0
	gc.Line = groupLine(gc)
	return gc
}

// checkCouchDBGroup compares a CouchDB group's restored files with borg's item list.
func checkCouchDBGroup(ctx context.Context, m *sources.Manifest, g sources.Group, archived []borg.Item, locate func(string) string) GroupCheck {
	gc := GroupCheck{Name: g.Name, Manifest: Count{g.Files, g.Dirs, g.Bytes}, Archived: &Count{}}
	problem := func(format string, a ...any) { gc.Problems = append(gc.Problems, fmt.Sprintf(format, a...)) }
	if archived == nil {
		problem("borg's item list of the archive could not be read, so there is nothing to compare CouchDB's files with")
	}
	inArchive := map[string]bool{}
	archivedFiles, restoredFiles := map[string]int64{}, map[string]int64{}
	dataRoot := couchDBRoot(m)
	relToData := func(p string) (string, bool) { return strings.CutPrefix(p, dataRoot+"/") }
	missing := 0
	for _, it := range archived {
		if !inCouchDBGroup(m, g, it.Path) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		inArchive[it.Path] = true
		if it.Type == "d" {
			gc.Archived.Dirs++
		} else {
			gc.Archived.Files++
		}
		if it.Type == "-" {
			gc.Archived.Bytes += it.Size
			if rel, ok := relToData(it.Path); ok {
				archivedFiles[rel] = it.Size
			}
		}
		local := locate(it.Path)
		fi, err := os.Lstat(local)
		switch {
		case local == "" || errors.Is(err, fs.ErrNotExist):
			missing++
			if missing <= 5 {
				problem("%s is missing from the restored copy", it.Path)
			}
			continue
		case err != nil:
			problem("cannot read %s: %v", local, unwrapPath(err))
			continue
		case it.Type == "d" && !fi.IsDir(), it.Type == "-" && !fi.Mode().IsRegular():
			problem("%s is not of the type borg archived (%s)", it.Path, it.Type)
			continue
		}
		if it.Type == "-" {
			if fi.Size() != it.Size {
				if fi.Size() < it.Size {
					problem("%s holds %s fewer than counted in the archive (cut short)", it.Path, sources.HumanBytes(it.Size-fi.Size()))
				} else {
					problem("%s holds %s more than borg archived", it.Path, sources.HumanBytes(fi.Size()-it.Size))
				}
			}
			if rel, ok := relToData(it.Path); ok {
				restoredFiles[rel] = fi.Size()
			}
		}
	}
	if missing > 5 {
		problem("%d more archived items are missing from the restored copy", missing-5)
	}
	for _, p := range g.Paths {
		if archived != nil && !inArchive[p] {
			gc.Notes = append(gc.Notes, fmt.Sprintf("%s was there when the backup began but not when borg read it (CouchDB removed it)", p))
		}
		if local := locate(p); local != "" {
			if err := countTree(ctx, local, &gc.Restored); err != nil && !errors.Is(err, fs.ErrNotExist) {
				problem("cannot read %s: %v", local, unwrapPath(err))
			}
		}
	}
	gc.Problems = append(gc.Problems, checkDatabases(m, g.Name, sources.DatabasesOf(archivedFiles), sources.DatabasesOf(restoredFiles), &gc.Notes)...)
	gc.Grew = gc.Archived.Files > gc.Manifest.Files || gc.Archived.Bytes > gc.Manifest.Bytes || gc.Archived.Dirs > gc.Manifest.Dirs
	gc.OK = len(gc.Problems) == 0
	gc.Line = groupLine(gc)
	return gc
}

// inCouchDBGroup says whether an archive path belongs to CouchDB group g: it is under one of the
// paths counted when the backup began, or it is new in the group's root since (a database CouchDB
// created while borg read), unless another group holds it (.shards has its own).
func inCouchDBGroup(m *sources.Manifest, g sources.Group, p string) bool {
	if underAny(p, g.Paths) {
		return true
	}
	if g.Root == "" || !strings.HasPrefix(p, g.Root+"/") {
		return false
	}
	for _, o := range m.Groups {
		if o.Name != g.Name && (underAny(p, o.Paths) || len(o.Root) > len(g.Root) && underAny(p, []string{o.Root})) {
			return false
		}
	}
	return true
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
	if gc.Archived != nil {
		parts = append(parts, "every file as borg archived it")
		a, m := *gc.Archived, gc.Manifest
		var more, fewer []string
		for _, d := range []struct {
			diff int64
			what string
		}{{a.Files - m.Files, "file"}, {a.Bytes - m.Bytes, ""}, {a.Dirs - m.Dirs, "directory"}} {
			s := func(n int64) string {
				if d.what == "" {
					return sources.HumanBytes(n)
				}
				return plural(n, d.what)
			}
			if d.diff > 0 {
				more = append(more, s(d.diff))
			} else if d.diff < 0 {
				fewer = append(fewer, s(-d.diff))
			}
		}
		if len(more) > 0 {
			parts = append(parts, fmt.Sprintf("%s more than counted when the backup began (CouchDB wrote while borg read; fine)", strings.Join(more, " and ")))
		}
		if len(fewer) > 0 {
			parts = append(parts, fmt.Sprintf("%s fewer than counted when the backup began (CouchDB compacted or removed files while borg read; fine)", strings.Join(fewer, " and ")))
		}
		parts = append(parts, gc.Notes...)
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

// checkDatabases compares, per database, the restored shard files (or view index files, for the
// indexes group) with the archived ones, and the archived shard files with those counted when the
// backup began: a database with none left in the archive was deleted while borg read (a note); one
// with some but not all lost shard files.
func checkDatabases(m *sources.Manifest, group string, archived, restored []sources.Database, notes *[]string) []string {
	byName := func(dbs []sources.Database) map[string]sources.Database {
		out := map[string]sources.Database{}
		for _, d := range dbs {
			out[d.Name] = d
		}
		return out
	}
	got := byName(restored)
	index := group == sources.GroupIndexes
	files := func(d sources.Database) int {
		if index {
			return d.ViewIndexFiles
		}
		return d.ShardFiles
	}
	what := "shard files"
	if index {
		what = "view index files"
	}
	var problems []string
	for _, db := range archived {
		if want, have := files(db), files(got[db.Name]); have < want {
			problems = append(problems, fmt.Sprintf("database %s has %d of its %d %s", db.Name, have, want, what))
		}
	}
	if index {
		return problems // view indexes come and go with design documents, and CouchDB rebuilds them
	}
	inArchive := byName(archived)
	for _, db := range m.CouchDB.Databases {
		want, have := db.ShardFiles, inArchive[db.Name].ShardFiles
		switch {
		case want == 0 || have >= want:
		case have == 0:
			*notes = append(*notes, fmt.Sprintf("database %s was deleted while the backup ran: its shard files were gone when borg read them", db.Name))
		default:
			problems = append(problems, fmt.Sprintf("database %s has %d of its %d shard files in the archive", db.Name, have, want))
		}
	}
	return problems
}
