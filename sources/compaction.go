package sources

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// CompactionRule names, in the manifest, the rule by which in-progress compaction files are
// left out of an archive.
const CompactionRule = "CouchDB compaction files in progress (<db>.couch.compact.data, <db>.couch.compact.meta, " +
	"<db>.couch.compact, <sig>.compact.view) are left out while their live file (<db>.couch, <sig>.view) " +
	"is present: they only hold a copy of the live file's documents, and CouchDB starts the compaction " +
	"again from the live file; without a live file they are kept. A restore, and the restore drill, leave out " +
	"those an archive holds all the same beside their live file (a compaction CouchDB began while borg read)"

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

// CompactionLeftovers returns, sorted, the compaction files in progress among files (paths of
// regular files, slash-separated) whose live file is among files too: by the compaction rule they
// hold nothing the live file lacks. An archive holds such a pair when CouchDB began a compaction
// after the backup had gathered its exclusions; borg then read the two files at different moments,
// and CouchDB, given both, resumes the compaction from the stale copy and keeps its bytes.
func CompactionLeftovers(files []string) []string {
	have := make(map[string]bool, len(files))
	for _, f := range files {
		have[f] = true
	}
	var out []string
	for _, f := range files {
		dir, name := path.Split(f)
		if live, ok := compactionLive(name); ok && have[dir+live] {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
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
