package sources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ManifestFormatVersion is the version of the manifest layout written by
// this package. It grows only when a field changes meaning or is removed;
// added fields keep it.
const ManifestFormatVersion = 1

// ManifestName is the manifest's file name inside the staged "cht-backup/".
const ManifestName = "manifest.json"

// Group names: every archive is made of these groups of files.
const (
	GroupCouchDB     = "couchdb"         // COUCHDB_DATA without .shards: shards/, system dbs, .delete/, nouveau/
	GroupIndexes     = "couchdb-indexes" // COUCHDB_DATA/.shards: view indexes, archived first
	GroupEnv         = "env"             // upgrade-service/.env
	GroupCompose     = "compose"         // compose files
	GroupTLS         = "tls"             // nginx:/etc/nginx/private/
	GroupCredentials = "credentials"     // couchdb:/opt/couchdb/etc/local.d/
)

// Manifest describes one archive: where it came from, what it holds, and the
// figures a restore or a restore drill compares against. It is written as
// cht-backup/manifest.json in every archive. It holds no .env value.
//
// Archive paths are paths as borg stores them: a host path without its
// leading "/" (home/ubuntu/cht/upgrade-service/.env), or cht-backup/... for
// staged files.
type Manifest struct {
	FormatVersion int       `json:"format_version"` // ManifestFormatVersion
	ToolVersion   string    `json:"tool_version"`   // cht-backup version
	BorgVersion   string    `json:"borg_version"`
	Hostname      string    `json:"hostname"`
	Created       time.Time `json:"created"`     // UTC, whole seconds (RFC 3339)
	CHTVersion    string    `json:"cht_version"` // from cht-* image tags; "" when not found
	ProjectName   string    `json:"compose_project"`

	Sources ManifestSources `json:"sources"`
	// EnvKeys are the variable names set in .env (never their values).
	EnvKeys []string `json:"env_keys"`
	// Containers the files of tls and credentials came from, by service.
	Containers map[string]Container `json:"containers"`
	// ArchivePaths are borg's path arguments, in the order given (.shards first).
	ArchivePaths []string      `json:"archive_paths"`
	Skipped      []SkippedPart `json:"skipped"`
	// Compaction names the rule that leaves in-progress compaction files out, and what it left out.
	Compaction CompactionExclusion `json:"compaction_excluded"`
	// Missing are parts that could not be gathered (Docker down, a container missing), and why:
	// such an archive is partial.
	Missing []MissingPart `json:"missing,omitempty"`
	// Resolved are the .env and compose files that were symlinks: borg archives the link at
	// Path, and the content it led to as Copy (in cht-backup/resolved/).
	Resolved []ResolvedFile `json:"resolved,omitempty"`
	Groups   []Group        `json:"groups"`
	// SHA256 of every small file (env, compose, tls, credentials; no
	// CouchDB file), hex, keyed by archive path.
	SHA256  map[string]string `json:"sha256"`
	CouchDB CouchDBInventory  `json:"couchdb"`
	// CouchDBLive is what the live CouchDB said before borg read its files; nil in archives
	// made before it was recorded.
	CouchDBLive *LiveCouchDB `json:"couchdb_live,omitempty"`
}

// ManifestSources are the host paths the archive was made from.
type ManifestSources struct {
	CHTDir       string   `json:"cht_dir"`
	CouchDBData  string   `json:"couchdb_data"`
	EnvFile      string   `json:"env_file"`
	ComposePath  string   `json:"compose_path"`
	ComposeFiles []string `json:"compose_files"`
}

// SkippedPart is a part left out on the user's request.
type SkippedPart struct {
	Part   string `json:"part"`
	Reason string `json:"reason"`
}

// ResolvedDir is where, under the staged "cht-backup/", the content of symlinked .env and compose
// files is copied.
const ResolvedDir = "resolved"

// ResolvedFile is a symlinked file whose content the archive holds as a copy.
type ResolvedFile struct {
	Path   string `json:"path"`   // archive path of the link
	Target string `json:"target"` // host path the link led to at backup time
	Copy   string `json:"copy"`   // archive path of the content
}

// ResolvedCopy is the archive path holding the content of the file archived at p: its staged
// copy when p was a symlink, else p itself.
func (m *Manifest) ResolvedCopy(p string) string {
	for _, r := range m.Resolved {
		if r.Path == p {
			return r.Copy
		}
	}
	return p
}

// MissingPart is a part a backup could not gather, and why.
type MissingPart struct {
	Part   string `json:"part"`
	Reason string `json:"reason"`
}

// Group counts one group of files the way the CHT docs have admins check a
// copy: Files is `find PATHS ! -type d | wc -l` (regular files and
// symlinks), Dirs is `find PATHS -type d | wc -l` (the roots included), and
// Bytes is the apparent size of the regular files (`du -sb --apparent-size`
// without the directories' own sizes).
type Group struct {
	Name  string   `json:"name"`
	Root  string   `json:"root"`  // archive path every path of the group lies under
	Paths []string `json:"paths"` // archive paths of the group's top-level items
	Files int64    `json:"files"`
	Dirs  int64    `json:"dirs"`
	Bytes int64    `json:"bytes"`
}

// CouchDBInventory is what the CouchDB data directory held.
type CouchDBInventory struct {
	// DataDir is COUCHDB_DATA itself, which is not an archive item: a
	// restore recreates it with these.
	DataDir FileOwner `json:"data_dir"`
	// RootEntries are the names directly in COUCHDB_DATA, sorted.
	RootEntries []string `json:"root_entries"`
	// ShardRanges are the directory names under shards/, sorted.
	ShardRanges []string   `json:"shard_ranges"`
	Databases   []Database `json:"databases"`
}

// FileOwner is a file's permission bits (octal, e.g. "0755") and owner.
type FileOwner struct {
	Mode string `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// Database is one CouchDB database found as shards/<range>/<name>.<suffix>.couch.
type Database struct {
	Name           string `json:"name"`
	ShardFiles     int    `json:"shard_files"`
	Bytes          int64  `json:"bytes"`
	ViewIndexFiles int    `json:"view_index_files"` // under .shards/<range>/<name>.<suffix>_design/
	ViewIndexBytes int64  `json:"view_index_bytes"`
}

// Group returns the named group, or nil when the archive has none.
func (m *Manifest) Group(name string) *Group {
	for i := range m.Groups {
		if m.Groups[i].Name == name {
			return &m.Groups[i]
		}
	}
	return nil
}

// ReadManifest reads a manifest written by this or an older format version.
func ReadManifest(p string) (*Manifest, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read manifest %s: %v", p, unwrapPathError(err))
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is not valid JSON: %v; the archive may be damaged", p, err)
	}
	if m.FormatVersion < 1 {
		return nil, fmt.Errorf("%s is not a cht-backup manifest (no format_version)", p)
	}
	if m.FormatVersion > ManifestFormatVersion {
		return nil, fmt.Errorf("manifest %s has format %d, newer than this cht-backup understands (%d); upgrade cht-backup", p, m.FormatVersion, ManifestFormatVersion)
	}
	return &m, nil
}

// write stores the manifest with mode 0600; it must not exist yet.
func (m *Manifest) write(p string) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("cannot write manifest %s: %v", p, unwrapPathError(err))
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("cannot write manifest %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write manifest %s: %v", p, err)
	}
	return nil
}

// archiver maps host paths to archive paths: staged files are relative to
// the working directory borg runs in, everything else is absolute.
type archiver struct {
	workDir string
	// onEntry, when set, sees every directory and regular file countGroup counts, so one walk
	// also gives the CouchDB inventory.
	onEntry func(p string, d fs.DirEntry, size int64)
}

func (a archiver) path(hostPath string) string {
	if rel, err := filepath.Rel(a.workDir, hostPath); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return filepath.ToSlash(rel)
	}
	return strings.TrimPrefix(filepath.ToSlash(hostPath), "/")
}

// countGroup walks the group's top-level items without following symlinks,
// hashing regular files into sums when sums is not nil.
func (a archiver) countGroup(ctx context.Context, name, root string, items []string, sums map[string]string) (Group, error) {
	g := Group{Name: name, Root: a.path(root), Paths: []string{}}
	for _, item := range items {
		g.Paths = append(g.Paths, a.path(item))
		err := filepath.WalkDir(item, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("cannot read %s: %v; check its permissions", p, unwrapPathError(err))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.IsDir() {
				g.Dirs++
				if a.onEntry != nil {
					a.onEntry(p, d, 0)
				}
				return nil
			}
			g.Files++
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("cannot read %s: %v", p, unwrapPathError(err))
			}
			g.Bytes += fi.Size()
			if a.onEntry != nil {
				a.onEntry(p, d, fi.Size())
			}
			if sums != nil {
				sum, err := fileSHA256(p)
				if err != nil {
					return err
				}
				sums[a.path(p)] = sum
			}
			return nil
		})
		if err != nil {
			return g, err
		}
	}
	return g, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v; check its permissions", p, unwrapPathError(err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("cannot read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func ownerOf(p string) (FileOwner, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return FileOwner{}, err
	}
	o := FileOwner{Mode: fmt.Sprintf("%04o", fi.Mode().Perm()), UID: -1, GID: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		o.UID, o.GID = int(st.Uid), int(st.Gid)
	}
	return o, nil
}

var (
	shardFileRE = regexp.MustCompile(`^(.+)\.([0-9]+)\.couch$`)
	indexFileRE = regexp.MustCompile(`^(.+)\.([0-9]+)_design/`)
)

// InventoryCouchDB lists databases and shard ranges: CouchDB names shard
// files shards/<range>/<db>.<suffix>.couch, where <db> may hold "/", and
// keeps their view indexes under .shards/<range>/<db>.<suffix>_design/.
func InventoryCouchDB(ctx context.Context, dataDir string) (CouchDBInventory, error) {
	c := newCouchInventory(dataDir)
	for _, top := range []string{"shards", ".shards"} {
		err := filepath.WalkDir(filepath.Join(dataDir, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && p == filepath.Join(dataDir, top) {
					return fs.SkipDir
				}
				return fmt.Errorf("cannot read %s: %v", p, unwrapPathError(err))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			var size int64
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				size = fi.Size()
			}
			c.visit(p, d, size, 1)
			return nil
		})
		if err != nil {
			return CouchDBInventory{}, err
		}
	}
	return c.result()
}

// addDatabaseFile counts a file found at rel under shards/<range>/ (or .shards/<range>/ when
// index) for its database, when it is a shard file (or a view index file).
// addDatabaseFile counts (sign 1) or uncounts (-1) one regular file of a database, given by its
// path below the range directory: a shard file <db>.<suffix>.couch under shards/, or a view index
// file <db>.<suffix>_design/... under .shards/ (index). Other files belong to no database.
func addDatabaseFile(db func(string) *Database, index bool, rel string, size int64, sign int) {
	re := shardFileRE
	if index {
		re = indexFileRE
	}
	m := re.FindStringSubmatch(rel)
	if m == nil {
		return
	}
	d := db(m[1])
	if index {
		d.ViewIndexFiles += sign
		d.ViewIndexBytes += int64(sign) * size
	} else {
		d.ShardFiles += sign
		d.Bytes += int64(sign) * size
	}
}

func sortedDatabases(dbs map[string]*Database) []Database {
	out := []Database{}
	for _, d := range dbs {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DatabasesOf counts shard and view index files per database from regular files given by
// their path relative to the CouchDB data directory (shards/<range>/..., .shards/<range>/...)
// and their size: the same rules as InventoryCouchDB, for a list such as borg's item list.
// A compaction file <db>.<suffix>.couch.compact without its <db>.<suffix>.couch beside it counts
// as that shard file: borg read the directory while CouchDB swapped the compacted file in (it
// removes the old file, then renames the new one), and CouchDB, finding only the .compact file,
// finishes that switch when it opens the database.
func DatabasesOf(files map[string]int64) []Database {
	dbs := map[string]*Database{}
	db := func(name string) *Database {
		if dbs[name] == nil {
			dbs[name] = &Database{Name: name}
		}
		return dbs[name]
	}
	for rel, size := range files {
		parts := strings.SplitN(rel, "/", 3)
		if len(parts) < 3 {
			continue
		}
		switch parts[0] {
		case "shards":
			name := parts[2]
			if base, ok := strings.CutSuffix(name, ".compact"); ok && strings.HasSuffix(base, ".couch") {
				if _, live := files[parts[0]+"/"+parts[1]+"/"+base]; live {
					continue
				}
				name = base
			}
			addDatabaseFile(db, false, name, size, 1)
		case ".shards":
			addDatabaseFile(db, true, parts[2], size, 1)
		}
	}
	return sortedDatabases(dbs)
}

// chtImageRE matches CHT's own images, e.g. public.ecr.aws/medic/cht-api:4.21.0.
var chtImageRE = regexp.MustCompile(`(?:^|[/\s"'])cht-(api|sentinel|nginx|haproxy|couchdb):([0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*)`)

// chtVersion reads the CHT version from the tags of CHT's images in the
// compose files, then in the containers' image names, preferring cht-api.
func chtVersion(composeFiles []string, images []string) string {
	rank := map[string]int{"api": 0, "sentinel": 1, "nginx": 2, "haproxy": 3, "couchdb": 4}
	best, bestRank := "", len(rank)
	consider := func(text []byte) {
		for _, m := range chtImageRE.FindAllSubmatch(text, -1) {
			if r := rank[string(m[1])]; r < bestRank {
				best, bestRank = string(m[2]), r
			}
		}
	}
	for _, f := range composeFiles {
		if data, err := os.ReadFile(f); err == nil {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if bytes.Contains(line, []byte("image:")) {
					consider(line)
				}
			}
		}
	}
	if best == "" {
		for _, img := range images {
			consider([]byte(" " + img))
		}
	}
	return best
}

// commonRoot is the deepest path that is, or is a parent of, every
// (slash-separated) path given.
func commonRoot(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	root := paths[0]
	for _, p := range paths[1:] {
		for root != "." && root != "/" && p != root && !strings.HasPrefix(p, root+"/") {
			root = path.Dir(root)
		}
	}
	return root
}

// FileMode parses Mode back into permission bits.
func (o FileOwner) FileMode() (fs.FileMode, error) {
	v, err := strconv.ParseUint(o.Mode, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("bad mode %q in manifest", o.Mode)
	}
	return fs.FileMode(v).Perm(), nil
}
