package sources

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/client"
)

// Parts a user may leave out of a backup (--skip).
const (
	PartTLS         = "tls"         // the nginx container's /etc/nginx/private/
	PartCredentials = "credentials" // the couchdb container's /opt/couchdb/etc/local.d/
	PartCompose     = "compose"     // the compose files
)

// SkippableParts lists the parts GatherOptions.Skip accepts.
var SkippableParts = []string{PartTLS, PartCredentials, PartCompose}

// containerPart is a directory that lives only inside a container.
type containerPart struct {
	part, group, service, dir, what string
}

var containerParts = []containerPart{
	{PartTLS, GroupTLS, ServiceNginx, "/etc/nginx/private/", "the TLS certificate and key (cert.pem, key.pem)"},
	{PartCredentials, GroupCredentials, ServiceCouchDB, "/opt/couchdb/etc/local.d/", "CouchDB's cluster-credentials.ini (admin hash, secret, uuid)"},
}

// GatherOptions says what to gather and how to describe it.
type GatherOptions struct {
	ChtDir   string   // "" means DefaultCHTDir
	StateDir string   // staging goes to <StateDir>/staging/<run-id>/
	Skip     []string // parts to leave out, from SkippableParts
	// Docker may be nil: the container parts are then recorded as missing, with DockerErr as
	// the reason, and everything on the host is still gathered.
	Docker      *client.Client
	DockerErr   error
	ToolVersion string
	BorgVersion string
	Hostname    string    // "" means os.Hostname()
	Now         time.Time // zero means time.Now()
	RunID       string    // "" means NewRunID(Now)
}

// Gathered is a CHT host ready for `borg create`: run borg in WorkDir with
// Paths as its path arguments, in this order. Close removes the staging
// directory; call it on every way out.
type Gathered struct {
	WorkDir string // the staging directory; Paths' last element is relative to it
	// Paths are borg's path arguments: COUCHDB_DATA/.shards, COUCHDB_DATA/shards,
	// the other entries of COUCHDB_DATA, .env, the compose files, then StagingName.
	Paths []string
	// ExcludeFile is borg's --exclude-from file (compaction files in progress); "" when none.
	ExcludeFile string
	Skipped     []string // one line per skipped part, saying what the archive lacks
	// Missing has one line per part that could not be gathered (Docker down, a container
	// missing), saying what the archive lacks and why: the archive is partial.
	Missing      []string
	Notes        []string // what the user should know, e.g. that CouchDB was not running
	Manifest     *Manifest
	ManifestPath string
	Containers   map[string]Container // by service

	staging *Staging
}

// Close removes the staging directory; safe to call more than once.
func (g *Gathered) Close() error {
	if g == nil {
		return nil
	}
	return g.staging.Close()
}

// Gather finds everything a CHT host needs backed up, copies what lives only
// in containers into a fresh staging directory, and writes the manifest
// there. It reads CouchDB's files in place (only to count them); borg
// archives them from where they are, .shards first.
//
// On any error, cancellation of ctx included, Gather removes its staging
// directory before it returns: on SIGINT/SIGTERM the caller cancels ctx and
// waits for Gather, then registers Gathered.Close for the rest of the run.
// Do not Close from another goroutine while Gather runs.
func Gather(ctx context.Context, o GatherOptions) (_ *Gathered, err error) {
	skip := map[string]bool{}
	for _, s := range o.Skip {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(SkippableParts, s) {
			return nil, fmt.Errorf("unknown part %q to skip; choose from %s", s, strings.Join(SkippableParts, ", "))
		}
		skip[s] = true
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Hostname == "" {
		if o.Hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("cannot read the host name: %w", err)
		}
	}

	layout, err := Discover(o.ChtDir)
	if err != nil {
		return nil, err
	}
	data := layout.CouchDBData
	entries, err := os.ReadDir(data)
	if err != nil {
		return nil, fmt.Errorf("CouchDB data directory %s (COUCHDB_DATA in %s) cannot be read: %v; check its permissions and run as root", data, layout.EnvFile, unwrapPathError(err))
	}
	var hasShards, hasIndexes bool
	var rest []string
	for _, e := range entries {
		switch e.Name() {
		case "shards":
			hasShards = e.IsDir()
		case ".shards":
			hasIndexes = e.IsDir()
		default:
			rest = append(rest, filepath.Join(data, e.Name()))
		}
	}
	if !hasShards {
		return nil, fmt.Errorf("CouchDB data directory %s holds no shards/ directory, so it is not CouchDB's data; set COUCHDB_DATA in %s to the directory mounted at /opt/couchdb/data", data, layout.EnvFile)
	}
	if !skip[PartCompose] && len(layout.ComposeFiles) == 0 {
		return nil, fmt.Errorf("no compose files (*.yml) in %s or %s; check CHT_COMPOSE_PATH in %s, or skip compose", layout.ComposePath, layout.UpgradeServiceDir(), layout.EnvFile)
	}

	// Ask the live CouchDB before borg reads any of its files, and make sure COUCHDB_DATA is
	// what it really uses.
	env, err := ParseEnvFile(layout.EnvFile)
	if err != nil {
		return nil, err
	}
	live, liveNotes, err := askLiveCouchDB(ctx, o.Docker, o.DockerErr, layout, env)
	if err != nil {
		return nil, err
	}

	runID := o.RunID
	if runID == "" {
		runID = NewRunID(o.Now)
	}
	st, err := NewStaging(o.StateDir, runID)
	if err != nil {
		return nil, err
	}
	g := &Gathered{WorkDir: st.Dir, staging: st, Containers: map[string]Container{}, Notes: liveNotes}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()

	var skipped []SkippedPart
	var missing []MissingPart
	gathered := map[string]bool{}
	for _, cp := range containerParts {
		dest := filepath.Join(st.Root(), "containers", cp.service, filepath.FromSlash(strings.TrimPrefix(cp.dir, "/")))
		if skip[cp.part] {
			reason := fmt.Sprintf("%s: skipped on request; %s from the %s container's %s are not in this archive", cp.part, cp.what, cp.service, cp.dir)
			if cp.part == PartCredentials && (!slices.Contains(layout.EnvKeys, "COUCHDB_SECRET") || !slices.Contains(layout.EnvKeys, "COUCHDB_UUID")) {
				reason += ", and .env lacks COUCHDB_SECRET or COUCHDB_UUID, so no copy of them is kept"
			}
			skipped = append(skipped, SkippedPart{cp.part, reason})
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Degrade, don't abort: without this part the archive is partial, but CouchDB's data,
		// .env and the compose files are still worth archiving, the more so on a night CHT is down.
		miss := func(why string) {
			os.RemoveAll(filepath.Join(st.Root(), "containers", cp.service))
			missing = append(missing, MissingPart{cp.part, fmt.Sprintf("%s: %s from the %s container's %s are not in this archive: %s", cp.part, cp.what, cp.service, cp.dir, why)})
		}
		if o.Docker == nil {
			why := "Docker could not be asked"
			if o.DockerErr != nil {
				why = o.DockerErr.Error()
			}
			miss(why)
			continue
		}
		c, err := FindContainer(ctx, o.Docker, layout.ProjectName, cp.service)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			miss(err.Error())
			continue
		}
		g.Containers[cp.service] = c
		if err := CopyFromContainer(ctx, o.Docker, c, cp.dir, dest); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			miss(err.Error())
			continue
		}
		if des, err := os.ReadDir(dest); err != nil || len(des) == 0 {
			miss(fmt.Sprintf("%s in container %s is empty, but it should hold %s; check that container", cp.dir, c.Name, cp.what))
			continue
		}
		gathered[cp.part] = true
	}
	if skip[PartCompose] {
		skipped = append(skipped, SkippedPart{PartCompose, fmt.Sprintf("%s: skipped on request; the compose files in %s and %s are not in this archive", PartCompose, layout.ComposePath, layout.UpgradeServiceDir())})
	}

	// borg archives its path arguments in the order given: view indexes
	// before database files (CouchDB's backup rule), each entry of the data
	// directory once.
	var couchItems, indexItems []string
	if hasIndexes {
		indexItems = []string{filepath.Join(data, ".shards")}
	}
	couchItems = append([]string{filepath.Join(data, "shards")}, rest...)
	g.Paths = append(g.Paths, indexItems...)
	g.Paths = append(g.Paths, couchItems...)
	g.Paths = append(g.Paths, layout.EnvFile)
	var composeItems []string
	if !skip[PartCompose] {
		for _, f := range layout.ComposeFiles {
			if !slices.Contains(g.Paths, f) {
				composeItems = append(composeItems, f)
			}
		}
		g.Paths = append(g.Paths, composeItems...)
	}
	g.Paths = append(g.Paths, StagingName)

	a := archiver{workDir: st.Dir}
	// borg archives a symlink as a link: a .env or compose file that is one would leave its
	// content, the secrets, out of the archive. Its resolved content is staged as well.
	var resolved []ResolvedFile
	envItem := layout.EnvFile
	stage := func(hostPath string) (string, error) {
		copyPath, target, err := stageResolved(st.Root(), hostPath)
		if err != nil || copyPath == "" {
			return hostPath, err
		}
		resolved = append(resolved, ResolvedFile{Path: a.path(hostPath), Target: target, Copy: a.path(copyPath)})
		return copyPath, nil
	}
	if envItem, err = stage(layout.EnvFile); err != nil {
		return nil, err
	}
	composeHashed := make([]string, len(composeItems))
	for i, f := range composeItems {
		if composeHashed[i], err = stage(f); err != nil {
			return nil, err
		}
	}
	m := &Manifest{
		FormatVersion: ManifestFormatVersion,
		ToolVersion:   o.ToolVersion,
		BorgVersion:   o.BorgVersion,
		Hostname:      o.Hostname,
		Created:       o.Now.UTC().Truncate(time.Second),
		ProjectName:   layout.ProjectName,
		Sources: ManifestSources{
			CHTDir:       layout.CHTDir,
			CouchDBData:  data,
			EnvFile:      layout.EnvFile,
			ComposePath:  layout.ComposePath,
			ComposeFiles: orEmpty(composeItems),
		},
		EnvKeys:     orEmpty(layout.EnvKeys),
		Containers:  g.Containers,
		Skipped:     orEmptySkipped(skipped),
		Missing:     missing,
		SHA256:      map[string]string{},
		CouchDBLive: &live,
	}
	for _, p := range g.Paths {
		if p == StagingName {
			m.ArchivePaths = append(m.ArchivePaths, StagingName)
		} else {
			m.ArchivePaths = append(m.ArchivePaths, a.path(p))
		}
	}
	var images []string
	for _, c := range g.Containers {
		images = append(images, c.Image)
	}
	sort.Strings(images)
	m.CHTVersion = chtVersion(composeItems, images)

	type groupSpec struct {
		name  string
		root  string
		items []string
		hash  bool
	}
	specs := []groupSpec{
		{GroupIndexes, filepath.Join(data, ".shards"), indexItems, false},
		{GroupCouchDB, data, couchItems, false},
		{GroupEnv, envItem, []string{envItem}, true},
	}
	if !skip[PartCompose] {
		var dirs []string
		for _, f := range composeItems {
			dirs = append(dirs, a.path(filepath.Dir(f)))
		}
		specs = append(specs, groupSpec{GroupCompose, "/" + commonRoot(dirs), composeItems, true})
		// A symlinked compose file counts as the link under the compose root; its content is
		// hashed from the staged copy.
		for i, f := range composeItems {
			if composeHashed[i] != f {
				sum, err := fileSHA256(composeHashed[i])
				if err != nil {
					return nil, err
				}
				m.SHA256[a.path(composeHashed[i])] = sum
			}
		}
	}
	for _, cp := range containerParts {
		if gathered[cp.part] {
			dest := filepath.Join(st.Root(), "containers", cp.service, filepath.FromSlash(strings.TrimPrefix(cp.dir, "/")))
			specs = append(specs, groupSpec{cp.group, dest, []string{dest}, true})
		}
	}
	m.Resolved = resolved
	// One walk of the CouchDB data directory counts its groups, takes its inventory and finds
	// compaction files in progress.
	inv := newCouchInventory(data)
	var compacting []compactionCandidate
	for _, s := range specs {
		var sums map[string]string
		if s.hash {
			sums = m.SHA256
		}
		a.onEntry = nil
		if s.name == GroupIndexes || s.name == GroupCouchDB {
			group := s.name
			a.onEntry = func(p string, d fs.DirEntry, size int64) {
				inv.visit(p, d, size, 1)
				if _, ok := compactionLive(d.Name()); ok && d.Type().IsRegular() {
					compacting = append(compacting, compactionCandidate{path: p, entry: d, size: size, group: group})
				}
			}
		}
		grp, err := a.countGroup(ctx, s.name, s.root, s.items, sums)
		if err != nil {
			return nil, err
		}
		m.Groups = append(m.Groups, grp)
	}
	// Compaction files in progress hold a copy of what their live file holds: left out, and
	// uncounted, so the figures are those of what the archive holds.
	m.Compaction = CompactionExclusion{Rule: CompactionRule, Files: []string{}}
	var left []string
	for _, c := range leftOut(compacting) {
		grp := m.Group(c.group)
		grp.Files--
		grp.Bytes -= c.size
		inv.visit(c.path, c.entry, c.size, -1)
		left = append(left, c.path)
		m.Compaction.Files = append(m.Compaction.Files, a.path(c.path))
		m.Compaction.Bytes += c.size
	}
	if len(left) > 0 {
		g.ExcludeFile = filepath.Join(st.Root(), ExcludeName)
		if err := writeExcludePatterns(g.ExcludeFile, left); err != nil {
			return nil, fmt.Errorf("cannot write %s in staging: %v", ExcludeName, err)
		}
	}
	if m.CouchDB, err = inv.result(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	g.ManifestPath = filepath.Join(st.Root(), ManifestName)
	if err := m.write(g.ManifestPath); err != nil {
		return nil, err
	}
	g.Manifest = m
	for _, s := range skipped {
		g.Skipped = append(g.Skipped, s.Reason)
	}
	for _, m := range missing {
		g.Missing = append(g.Missing, m.Reason)
	}
	return g, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptySkipped(s []SkippedPart) []SkippedPart {
	if s == nil {
		return []SkippedPart{}
	}
	return s
}

// stageResolved copies the file a symlink at hostPath resolves to into the staging root, under
// resolved/<hostPath>, mode 0600, and returns the copy's path and the link's target. A path that
// is no symlink gives "". A link that leads nowhere, or to something that is not a regular file,
// is an error: its content cannot be archived.
func stageResolved(root, hostPath string) (copyPath, target string, err error) {
	fi, err := os.Lstat(hostPath)
	if err != nil {
		return "", "", fmt.Errorf("cannot read %s: %v", hostPath, unwrapPathError(err))
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return "", "", nil
	}
	target, err = filepath.EvalSymlinks(hostPath)
	if err != nil {
		return "", "", fmt.Errorf("%s is a symlink that cannot be followed (%v); make it the file itself or fix the link, or the archive would hold no content for it", hostPath, unwrapPathError(err))
	}
	tfi, err := os.Stat(target)
	if err != nil || !tfi.Mode().IsRegular() {
		return "", "", fmt.Errorf("%s is a symlink to %s, which is not a regular file; make it the file itself", hostPath, target)
	}
	copyPath = filepath.Join(root, ResolvedDir, filepath.FromSlash(strings.TrimPrefix(filepath.ToSlash(hostPath), "/")))
	if err := os.MkdirAll(filepath.Dir(copyPath), 0o700); err != nil {
		return "", "", err
	}
	in, err := os.Open(target)
	if err != nil {
		return "", "", fmt.Errorf("cannot read %s (the target of %s): %v", target, hostPath, unwrapPathError(err))
	}
	defer in.Close()
	out, err := os.OpenFile(copyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", "", fmt.Errorf("cannot copy %s into staging: %v", target, err)
	}
	return copyPath, target, out.Close()
}
