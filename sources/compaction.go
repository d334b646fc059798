package sources

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CompactionRule names, in the manifest, the rule by which in-progress compaction files are
// left out of an archive.
const CompactionRule = "CouchDB compaction files in progress (<db>.couch.compact.data, <db>.couch.compact.meta, " +
	"<db>.couch.compact, <sig>.compact.view) are left out while their live file (<db>.couch, <sig>.view) " +
	"is present: they only hold a copy of the live file's documents, and CouchDB starts the compaction " +
	"again from the live file; without a live file they are kept"

// CompactionExclusion is what the compaction rule left out of one archive.
type CompactionExclusion struct {
	Rule  string   `json:"rule"`
	Files []string `json:"files"` // archive paths
	Bytes int64    `json:"bytes"`
}

// ExcludeName is the file, in staging, of borg patterns the archive leaves out.
const ExcludeName = "exclude-patterns"

// compactionLive returns the name of the live file that a compaction file's data also lives
// in; ok is false when name is no compaction file.
func compactionLive(name string) (live string, ok bool) {
	for _, suf := range []string{".couch.compact.data", ".couch.compact.meta", ".couch.compact"} {
		if base, found := strings.CutSuffix(name, suf); found && base != "" {
			return base + ".couch", true
		}
	}
	if base, found := strings.CutSuffix(name, ".compact.view"); found && base != "" {
		return base + ".view", true
	}
	return "", false
}

// findCompaction lists the compaction files under dataDir's shards/ and .shards/ whose live
// file is present beside them, sorted, with their total size. It reads directory entries only,
// and stats nothing but the compaction files it finds.
func findCompaction(ctx context.Context, dataDir string) (files []string, bytes int64, err error) {
	for _, top := range []string{filepath.Join(dataDir, ".shards"), filepath.Join(dataDir, "shards")} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == top && os.IsNotExist(err) {
					return fs.SkipDir
				}
				return fmt.Errorf("cannot read %s: %v; check its permissions", p, unwrapPathError(err))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			live, ok := compactionLive(d.Name())
			if !ok {
				return nil
			}
			if fi, err := os.Lstat(filepath.Join(filepath.Dir(p), live)); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil // finished and renamed meanwhile: nothing to leave out
			}
			files = append(files, p)
			bytes += fi.Size()
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	sort.Strings(files)
	return files, bytes, nil
}

// writeExcludePatterns writes borg's --exclude-from file: one full-path pattern per file.
func writeExcludePatterns(path string, files []string) error {
	var b strings.Builder
	for _, f := range files {
		b.WriteString("pf:" + f + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
