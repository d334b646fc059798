package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
)

// copyItems lists what borg archived, as the copy extracted into x is checked against: without
// the compaction files in progress that dropCompactionLeftovers removes from x. It also returns
// their archive paths.
func (s Source) copyItems(ctx context.Context, m *sources.Manifest, x string) ([]borg.Item, []string, error) {
	items, err := s.Items(ctx)
	if err != nil {
		return nil, nil, err
	}
	return dropCompactionLeftovers(m, items, x)
}

// dropCompactionLeftovers removes from x, an extracted copy of the archive, the CouchDB
// compaction files in progress that the archive holds beside their live file, and returns the
// items without them and their archive paths. A backup leaves such files out when it gathers
// (sources.CompactionRule), but a compaction CouchDB begins while borg reads is archived: borg
// read its files at another moment than the live file, and CouchDB, finding them beside the
// restored live file, resumes the compaction from them and keeps their stale bytes in the
// compacted database (see the README's chunking section). Without them CouchDB starts the
// compaction again from the live file. Every restore and every drill drops them the same way,
// so what the drill opens is what a restore puts in place.
func dropCompactionLeftovers(m *sources.Manifest, items []borg.Item, x string) ([]borg.Item, []string, error) {
	root := couchDBRoot(m) + "/"
	var files []string
	for _, it := range items {
		if it.Type == "-" && strings.HasPrefix(it.Path, root) {
			files = append(files, it.Path)
		}
	}
	dropped := sources.CompactionLeftovers(files)
	if len(dropped) == 0 {
		return items, nil, nil
	}
	drop := make(map[string]bool, len(dropped))
	for _, p := range dropped {
		drop[p] = true
		if err := os.Remove(filepath.Join(x, filepath.FromSlash(p))); err != nil && !os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("cannot remove the compaction file in progress %s from the extracted copy: %v", p, unwrapPath(err))
		}
	}
	kept := make([]borg.Item, 0, len(items)-len(dropped))
	for _, it := range items {
		if !drop[it.Path] {
			kept = append(kept, it)
		}
	}
	return kept, dropped, nil
}

// compactionNote says in one line which compaction files a restore dropped, by their paths in
// the CouchDB data directory; "" when none.
func compactionNote(m *sources.Manifest, dropped []string) string {
	if len(dropped) == 0 {
		return ""
	}
	root := couchDBRoot(m) + "/"
	names := make([]string, 0, len(dropped))
	for _, p := range dropped {
		names = append(names, strings.TrimPrefix(p, root))
	}
	const show = 3
	list := strings.Join(names[:min(show, len(names))], ", ")
	if len(names) > show {
		list += fmt.Sprintf(" and %d more", len(names)-show)
	}
	return fmt.Sprintf("%s of a compaction CouchDB began while borg read left out (%s): their live files are restored, and CouchDB starts such a compaction again from the live file",
		plural(int64(len(dropped)), "file"), list)
}

// noteCompactionDropped adds compactionNote to the CouchDB groups that held the dropped files,
// by the rule the check assigns archived items to them (inCouchDBGroup).
func noteCompactionDropped(c *CheckResult, m *sources.Manifest, dropped []string) {
	for i := range c.Groups {
		gc := &c.Groups[i]
		g := m.Group(gc.Name)
		if !isCouchDBGroup(gc.Name) || gc.Skipped || g == nil {
			continue
		}
		var mine []string
		for _, p := range dropped {
			if inCouchDBGroup(m, *g, p) {
				mine = append(mine, p)
			}
		}
		if n := compactionNote(m, mine); n != "" {
			gc.Notes = append(gc.Notes, n)
			gc.Line = groupLine(*gc)
		}
	}
}
