package sources

import (
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

// compactionCandidate is a compaction file met while counting a group.
type compactionCandidate struct {
	path  string
	entry fs.DirEntry
	size  int64
	group string
}

// leftOut are the candidates whose live file is beside them, sorted by path: the archive
// leaves those out. One without a live file may be all there is of its data, and is kept.
func leftOut(cands []compactionCandidate) []compactionCandidate {
	var out []compactionCandidate
	for _, c := range cands {
		live, _ := compactionLive(c.entry.Name())
		if fi, err := os.Lstat(filepath.Join(filepath.Dir(c.path), live)); err == nil && fi.Mode().IsRegular() {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// writeExcludePatterns writes borg's --exclude-from file: one full-path pattern per file.
func writeExcludePatterns(path string, files []string) error {
	var b strings.Builder
	for _, f := range files {
		b.WriteString("pf:" + f + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
