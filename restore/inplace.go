package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"
)

// InPlaceOptions say what to restore onto which CHT host.
type InPlaceOptions struct {
	Source   Source
	CHTDir   string
	StateDir string // the manifest and .env are read in <StateDir>/restore/ first
	Docker   *client.Client
	Now      time.Time // for the names of moved-aside copies; zero means now
	// CouchDB says whether to start CouchDB on a copy of the extracted data before CHT stops.
	CouchDB DrillOptions
	Log     logrus.FieldLogger
}

// PlannedContainerPart is a container directory the restore puts back, and where it saves the
// container's current files first.
type PlannedContainerPart struct {
	ContainerPart
	Container sources.Container `json:"container"`
	SavedTo   string            `json:"saved_to"`
}

// Plan is an in-place restore worked out and checked before anything on the host changes:
// Describe shows it, Run carries it out, Close removes what planning extracted.
type Plan struct {
	Repository     string                 `json:"repository"`
	Archive        string                 `json:"archive"`
	ArchiveCreated time.Time              `json:"archive_created"`
	ArchiveHost    string                 `json:"archive_host"`
	CHTVersion     string                 `json:"cht_version,omitempty"`
	Stamp          string                 `json:"stamp"`
	Host           sources.HostPaths      `json:"host"`              // what the restored .env resolves to
	Current        *sources.HostPaths     `json:"current,omitempty"` // what this host's .env resolves to, when it has one
	Containers     []ContainerState       `json:"containers"`        // stopped, then started again
	ContainerParts []PlannedContainerPart `json:"container_parts"`
	MoveAside      []string               `json:"move_aside"`
	Placements     []Placement            `json:"placements"`
	ScratchParent  string                 `json:"scratch_parent"`
	SaveDir        string                 `json:"container_files_saved_to,omitempty"`
	NeedBytes      int64                  `json:"need_bytes"`
	FreeBytes      int64                  `json:"free_bytes"`
	Notes          []string               `json:"notes,omitempty"`
	Manifest       *sources.Manifest      `json:"-"`

	src    Source
	docker *client.Client
	drill  DrillOptions
	probe  *Scratch
	log    logrus.FieldLogger
	held   bool // the test hold (TestHoldEnv) was taken
}

// ErrMountPoint marks a CouchDB data directory that is a mount point: it cannot be renamed aside.
var ErrMountPoint = errors.New("CouchDB data directory is a mount point")

// ErrNoContainer marks an archive part whose container is missing on this host.
var ErrNoContainer = errors.New("container missing")

// PlanInPlace reads the archive's manifest and .env (into <StateDir>/restore/, removed by Close),
// resolves where everything goes on this host, finds the compose project's containers and checks
// that the restore can be done (free space, nothing that cannot be moved aside). It changes nothing.
func PlanInPlace(ctx context.Context, o InPlaceOptions) (_ *Plan, err error) {
	if o.Docker == nil {
		return nil, errors.New("an in-place restore needs Docker: it stops CHT's containers and puts files back into them")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	chtDir, err := filepath.Abs(o.CHTDir)
	if err != nil {
		return nil, err
	}
	p := &Plan{Repository: o.Source.Repo.Raw, Archive: o.Source.Archive, Stamp: o.Now.UTC().Format(StampFormat),
		src: o.Source, docker: o.Docker, drill: o.CouchDB, log: discard(o.Log)}
	if p.drill.Docker == nil && p.drill.DockerErr == nil {
		p.drill.Docker = o.Docker
	}
	if p.drill.Log == nil {
		p.drill.Log = p.log
	}

	parent := filepath.Join(o.StateDir, "restore")
	if removed, _ := RemoveStaleScratch(parent, "probe-"); len(removed) > 0 {
		p.log.Warnf("removed scratch left by an earlier restore that was killed: %s", strings.Join(removed, ", "))
	}
	if p.probe, err = NewScratch(parent, "probe-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	mdir, err := p.probe.Sub("manifest")
	if err != nil {
		return nil, err
	}
	m, err := o.Source.FetchManifest(ctx, mdir)
	if err != nil {
		return nil, err
	}
	p.Manifest, p.ArchiveCreated, p.ArchiveHost, p.CHTVersion = m, m.Created, m.Hostname, m.CHTVersion
	edir, err := p.probe.Sub("env")
	if err != nil {
		return nil, err
	}
	if err := o.Source.Extract(ctx, edir, envRoot(m)); err != nil {
		return nil, fmt.Errorf("cannot read the archive's .env: %w", err)
	}
	restoredEnv, err := sources.ParseEnvFile(filepath.Join(edir, filepath.FromSlash(envRoot(m))))
	if err != nil {
		return nil, fmt.Errorf("the archive's .env cannot be read: %w", err)
	}
	p.Host = sources.ResolveHostPaths(chtDir, restoredEnv)

	cur := sources.ResolveHostPaths(chtDir, nil)
	if env, err := sources.ParseEnvFile(p.Host.EnvFile); err == nil {
		cur = sources.ResolveHostPaths(chtDir, env)
		p.Current = &cur
	} else if _, serr := os.Stat(p.Host.EnvFile); serr == nil {
		p.Notes = append(p.Notes, fmt.Sprintf("this host's %s cannot be read (%v); it is moved aside like the rest", p.Host.EnvFile, err))
	} else {
		p.Notes = append(p.Notes, fmt.Sprintf("this host has no %s yet (a fresh host)", p.Host.EnvFile))
	}

	// CouchDB data: where the restored .env says; through a symlink to where it really is.
	data := p.Host.CouchDBData
	if real, err := filepath.EvalSymlinks(data); err == nil && real != data {
		p.Notes = append(p.Notes, fmt.Sprintf("%s is a symlink to %s: the CouchDB data is restored there", data, real))
		data = real
	}
	if mounted, err := isMountPoint(data); err != nil {
		return nil, err
	} else if mounted {
		return nil, fmt.Errorf("%s is where the CouchDB data goes, but it is a mount point, which cannot be moved aside: %w", data, ErrMountPoint)
	}
	p.Placements = InPlaceLayout(m, p.Host)
	p.Placements[0].To = data
	if p.Current != nil && p.Current.CouchDBData != p.Host.CouchDBData {
		p.Notes = append(p.Notes, fmt.Sprintf("this host's .env names CouchDB data %s, the restored one %s: the first is left as it is", p.Current.CouchDBData, p.Host.CouchDBData))
	}

	// What is there now is moved aside: every path a placement takes, and, when the archive holds
	// compose files, the current ones (a compose file the archive lacks would otherwise still be
	// used by the upgrade service). An archive made with --skip compose replaces none of them.
	seen := map[string]bool{}
	addAside := func(path string) {
		if seen[path] {
			return
		}
		if _, err := os.Lstat(path); err == nil {
			seen[path] = true
			p.MoveAside = append(p.MoveAside, path)
		}
	}
	for _, pl := range p.Placements {
		addAside(pl.To)
	}
	composeDirs := []string{cur.ComposePath, filepath.Dir(p.Host.EnvFile)}
	if len(m.Sources.ComposeFiles) == 0 {
		composeDirs = nil // the manifest's skipped parts say so in the plan's notes
	}
	for _, dir := range composeDirs {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		sort.Strings(matches)
		for _, f := range matches {
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
				addAside(f)
			}
		}
	}

	// Containers: those of the project the restored .env names, and of this host's current one.
	projects := []string{p.Host.Project}
	if cur.Project != p.Host.Project {
		projects = append(projects, cur.Project)
		p.Notes = append(p.Notes, fmt.Sprintf("this host's .env names compose project %q, the restored one %q: containers of both are stopped and started", cur.Project, p.Host.Project))
	}
	ids := map[string]bool{}
	for _, proj := range projects {
		cs, err := projectContainers(ctx, o.Docker, proj)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if !ids[c.ID] {
				ids[c.ID] = true
				p.Containers = append(p.Containers, c)
			}
		}
	}
	p.SaveDir = asideName(filepath.Join(chtDir, "container-files"), "before-restore", p.Stamp, nil)
	for _, cp := range containerParts(m) {
		var found sources.Container
		var ferr error
		for _, proj := range projects {
			if found, ferr = sources.FindContainer(ctx, o.Docker, proj, cp.Service); ferr == nil {
				break
			}
		}
		switch {
		case errors.Is(ferr, sources.ErrContainerNotFound):
			return nil, fmt.Errorf("the archive holds the %s of the %s container, but compose project %s has no %s container to put them back into: %w",
				cp.describe(), cp.Service, strings.Join(quoted(projects), " or "), cp.Service, ErrNoContainer)
		case ferr != nil:
			return nil, ferr // Docker could not be asked: say so, not "no container"
		}
		if !ids[found.ID] {
			ids[found.ID] = true
			p.Containers = append(p.Containers, ContainerState{ID: found.ID, Name: found.Name, Service: cp.Service, State: found.State, FoundBy: found.FoundBy})
		}
		p.ContainerParts = append(p.ContainerParts, PlannedContainerPart{ContainerPart: cp, Container: found, SavedTo: filepath.Join(p.SaveDir, cp.Service)})
	}
	sort.SliceStable(p.Containers, func(i, j int) bool {
		return serviceRank(p.Containers[i].Service) < serviceRank(p.Containers[j].Service)
	})
	if len(p.ContainerParts) == 0 {
		p.SaveDir = ""
	}
	for _, s := range m.Skipped {
		p.Notes = append(p.Notes, "the archive lacks a part, which stays as it is on this host: "+s.Reason)
	}

	// The archive is extracted next to the CouchDB data directory, so the data is renamed into
	// place, not copied; the moved-aside copy stays on the same disk.
	p.ScratchParent = filepath.Dir(data)
	// A restore killed before it could clean up (SIGKILL, power loss) left its copy of the archive
	// here: health records and secrets, and as much space as the CouchDB data.
	if removed, err := RemoveStaleScratch(p.ScratchParent, scratchPrefix); len(removed) > 0 {
		p.log.Warnf("removed the extracted copy left by an earlier restore that was killed: %s", strings.Join(removed, ", "))
	} else if err != nil {
		p.log.Warnf("cannot look for scratch left by an earlier restore in %s: %v", p.ScratchParent, err)
	}
	p.NeedBytes = archiveBytes(m)
	if mode, _ := ParseDrillMode(p.drill.Mode); mode != DrillNever {
		// The CouchDB drill works on a second copy of the data.
		if g := m.Group(sources.GroupCouchDB); g != nil {
			p.NeedBytes += g.Bytes
		}
		if g := m.Group(sources.GroupIndexes); g != nil {
			p.NeedBytes += g.Bytes
		}
	}
	if p.FreeBytes, err = checkSpace(p.ScratchParent, p.NeedBytes); err != nil {
		return nil, err
	}
	return p, nil
}

// isMountPoint says whether dir exists and is on another filesystem than its parent.
func isMountPoint(dir string) (bool, error) {
	var st, pst syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("cannot read %s: %v", dir, err)
	}
	if err := syscall.Stat(filepath.Dir(dir), &pst); err != nil {
		return false, fmt.Errorf("cannot read %s: %v", filepath.Dir(dir), err)
	}
	return st.Dev != pst.Dev, nil
}

// Close removes the manifest and .env that planning extracted.
func (p *Plan) Close() error {
	if p == nil {
		return nil
	}
	return p.probe.Close()
}

// Describe prints the plan in the order Run carries it out.
func (p *Plan) Describe(w io.Writer) {
	fmt.Fprintf(w, "Restore in place from archive %s of %s\n", p.Archive, p.Repository)
	what := fmt.Sprintf("made %s on host %s", p.ArchiveCreated.Format(time.RFC3339), p.ArchiveHost)
	if p.CHTVersion != "" {
		what += ", CHT " + p.CHTVersion
	}
	fmt.Fprintf(w, "  (%s)\n", what)
	fmt.Fprintf(w, "  1. extract the archive next to the CouchDB data, in %s (CHT keeps running; needs about %s, %s free)\n",
		p.ScratchParent, sources.HumanBytes(p.NeedBytes), sources.HumanBytes(p.FreeBytes))
	if mode, _ := ParseDrillMode(p.drill.Mode); mode != DrillNever {
		fmt.Fprintf(w, "     then start CouchDB on a copy of it and check that every database opens (--couchdb %s)\n", mode)
	}
	var names, down []string
	for i := len(p.Containers) - 1; i >= 0; i-- {
		c := p.Containers[i]
		if isUp(c.State) {
			names = append(names, fmt.Sprintf("%s (%s)", c.Name, c.State))
		} else {
			down = append(down, fmt.Sprintf("%s (%s)", c.Name, c.State))
		}
	}
	switch {
	case len(names) == 0 && len(down) == 0:
		fmt.Fprintf(w, "  2. stop the containers of compose project %q: none found\n", p.Host.Project)
	case len(names) == 0:
		fmt.Fprintf(w, "  2. stop the containers of compose project %q: none is running\n", p.Host.Project)
	default:
		fmt.Fprintf(w, "  2. stop the containers of compose project %q: %s\n", p.Host.Project, strings.Join(names, ", "))
	}
	if len(down) > 0 {
		fmt.Fprintf(w, "     not running, so left as they are (neither stopped nor started): %s\n", strings.Join(down, ", "))
	}
	if len(p.ContainerParts) > 0 {
		fmt.Fprintf(w, "  3. save the containers' current files to %s:\n", p.SaveDir)
		for _, cp := range p.ContainerParts {
			fmt.Fprintf(w, "       %s:%s -> %s\n", cp.Container.Name, cp.Dir, cp.SavedTo)
		}
	} else {
		fmt.Fprintf(w, "  3. no container files to save (the archive holds none)\n")
	}
	if len(p.MoveAside) > 0 {
		fmt.Fprintf(w, "  4. move aside what is there now (nothing is deleted):\n")
		for _, path := range p.MoveAside {
			// The name moveAside will choose, a free variant when that one is taken.
			fmt.Fprintf(w, "       %s -> %s\n", path, asideName(path, "before-restore", p.Stamp, nil))
		}
	} else {
		fmt.Fprintf(w, "  4. nothing to move aside (none of the paths below exists yet)\n")
	}
	fmt.Fprintf(w, "  5. put the archive's files in place:\n")
	for _, pl := range p.Placements {
		extra := ""
		if pl.Group == sources.GroupCouchDB {
			o := p.Manifest.CouchDB.DataDir
			extra = fmt.Sprintf(" (mode %s, owner %d:%d)", o.Mode, o.UID, o.GID)
		}
		fmt.Fprintf(w, "       %-24s -> %s%s\n", pl.Describe(), pl.To, extra)
	}
	if len(p.ContainerParts) > 0 {
		fmt.Fprintf(w, "  6. copy the archive's files back into the containers:\n")
		for _, cp := range p.ContainerParts {
			fmt.Fprintf(w, "       %-24s -> %s:%s\n", cp.describe(), cp.Container.Name, cp.Dir)
		}
	} else {
		fmt.Fprintf(w, "  6. no files to copy into containers\n")
	}
	fmt.Fprintf(w, "  7. start again the containers step 2 stopped, and report their state\n")
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// ContainerCopy is a container directory saved or put back.
type ContainerCopy struct {
	Container string   `json:"container"`
	Dir       string   `json:"dir"`
	SavedTo   string   `json:"saved_to,omitempty"`
	Files     []string `json:"files,omitempty"`
}

// InPlaceResult is what an in-place restore did; after a failure it says in what state the host
// is and how to go back.
type InPlaceResult struct {
	Repository      string           `json:"repository"`
	Archive         string           `json:"archive"`
	OK              bool             `json:"ok"`
	Stopped         []ContainerState `json:"stopped"`
	Saved           []ContainerCopy  `json:"container_files_saved"`
	MovedAside      []Move           `json:"moved_aside"`
	Placed          []Placement      `json:"placed"`
	PutBack         []ContainerCopy  `json:"put_back"`
	Started         []ContainerState `json:"started"`
	Warnings        []string         `json:"warnings,omitempty"`
	Notes           []string         `json:"notes,omitempty"`
	CouchDB         *CouchDBDrill    `json:"couchdb,omitempty"` // CouchDB started on the extracted copy before CHT stopped
	FailedStep      string           `json:"failed_step,omitempty"`
	Error           string           `json:"error,omitempty"`
	ContainersNow   []ContainerState `json:"containers_now,omitempty"` // after a failure: as Docker reports them
	State           []string         `json:"state,omitempty"`          // after a failure: the host now
	Recovery        []string         `json:"recovery,omitempty"`       // after a failure: shell commands back to the state before
	DurationSeconds float64          `json:"duration_seconds"`
	// CompactionDropped are archive paths of compaction files in progress left out, their live
	// file being restored (see dropCompactionLeftovers).
	CompactionDropped []string `json:"compaction_dropped,omitempty"`
}

// StepError is an in-place restore that stopped at one step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("restore in place stopped at %q: %v", e.Step, e.Err)
}
func (e *StepError) Unwrap() error { return e.Err }

// Steps of an in-place restore, as results and errors name them.
const (
	StepExtract = "extract the archive"
	StepStop    = "stop the containers"
	StepSave    = "save the container files"
	StepMove    = "move aside"
	StepPlace   = "put the files in place"
	StepPutBack = "copy files into the containers"
	StepStart   = "start the containers"
)

var steps = []string{StepExtract, StepStop, StepSave, StepMove, StepPlace, StepPutBack, StepStart}

// Run carries the plan out: extract (CHT still running), stop the containers, save their files,
// move aside, put in place, copy files into the containers, start them. It stops at the first
// failure; the result then says what state the host is in and how to return to it.
func (p *Plan) Run(ctx context.Context) (*InPlaceResult, error) {
	start := time.Now()
	res := &InPlaceResult{Repository: p.Repository, Archive: p.Archive, Stopped: []ContainerState{}, Saved: []ContainerCopy{},
		MovedAside: []Move{}, Placed: []Placement{}, PutBack: []ContainerCopy{}, Started: []ContainerState{}}
	var attempted []ContainerCopy // put-backs begun, finished or not
	var wasUp []ContainerState    // the containers up when the stop step began, in stop order

	fail := func(step string, err error) (*InPlaceResult, error) {
		if errors.Is(err, context.Canceled) {
			err = fmt.Errorf("interrupted (SIGINT, SIGTERM or SIGHUP): %w", err)
		}
		p.reconcile(res, wasUp, step == StepStart)
		res.FailedStep, res.Error = step, err.Error()
		res.State, res.Recovery = p.aftermath(res, step, attempted)
		res.DurationSeconds = time.Since(start).Seconds()
		return res, &StepError{Step: step, Err: err}
	}
	log := p.log

	// 1. Extract while CHT still runs: a failure here changes nothing on the host.
	if err := os.MkdirAll(p.ScratchParent, 0o755); err != nil {
		return fail(StepExtract, fmt.Errorf("cannot create %s: %v", p.ScratchParent, unwrapPath(err)))
	}
	scratch, err := NewScratch(p.ScratchParent, scratchPrefix)
	if err != nil {
		return fail(StepExtract, err)
	}
	defer func() {
		if err := scratch.Close(); err != nil {
			log.Error(err)
		}
	}()
	x, err := scratch.Sub("archive")
	if err != nil {
		return fail(StepExtract, err)
	}
	log.Infof("extracting %s into %s", p.Archive, x)
	if err := p.src.Extract(ctx, x); err != nil {
		return fail(StepExtract, err)
	}
	for _, pl := range p.Placements {
		if _, err := os.Lstat(filepath.Join(x, filepath.FromSlash(pl.From))); err != nil {
			return fail(StepExtract, fmt.Errorf("the archive lacks %s (%s)", pl.From, pl.Describe()))
		}
	}
	for _, cp := range p.ContainerParts {
		if _, err := os.Lstat(filepath.Join(x, filepath.FromSlash(cp.From))); err != nil {
			return fail(StepExtract, fmt.Errorf("the archive lacks %s (%s)", cp.From, cp.describe()))
		}
	}
	// What was extracted must be what was backed up (the drill's comparison) before anything on
	// the host changes: a mismatch found now costs nothing.
	items, dropped, err := p.src.copyItems(ctx, p.Manifest, x)
	if err != nil {
		return fail(StepExtract, err)
	}
	res.CompactionDropped = dropped
	if n := compactionNote(p.Manifest, res.CompactionDropped); n != "" {
		res.Notes = append(res.Notes, n)
	}
	if c := Check(ctx, p.Manifest, items, func(a string) string { return filepath.Join(x, filepath.FromSlash(a)) }); !c.OK {
		return fail(StepExtract, fmt.Errorf("the extracted archive differs from its manifest: %s", strings.Join(c.Problems, "; ")))
	}
	// CouchDB must open what goes in place, and a copy of it: the drill changes what it opens.
	if mode, _ := ParseDrillMode(p.drill.Mode); mode != DrillNever {
		dcopy := filepath.Join(scratch.Dir, "drill")
		if err := copyForDrill(ctx, filepath.Join(x, filepath.FromSlash(couchDBRoot(p.Manifest))), dcopy); err != nil {
			return fail(StepExtract, fmt.Errorf("cannot copy the extracted CouchDB data for the drill: %v", unwrapPath(err)))
		}
	}
	res.CouchDB = DrillCouchDB(ctx, p.drill, p.Manifest, filepath.Join(scratch.Dir, "drill"))
	if err := sources.RemoveTree(filepath.Join(scratch.Dir, "drill"), "drill copy"); err != nil {
		log.Warn(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(StepExtract, err)
	}
	if !res.CouchDB.OK() {
		return fail(StepExtract, fmt.Errorf("%s", res.CouchDB.Reason))
	}
	// An interruption is reported at the step it came in, checked at the end of each step.
	if err := ctx.Err(); err != nil {
		return fail(StepExtract, err)
	}

	// 2. Stop: front ends first, CouchDB last. Only what is up is stopped (and later started).
	for i := len(p.Containers) - 1; i >= 0; i-- {
		if c := inspectState(ctx, p.docker, p.Containers[i]); isUp(c.State) {
			wasUp = append(wasUp, c)
		}
	}
	for _, c := range wasUp {
		if err := ctx.Err(); err != nil {
			return fail(StepStop, err)
		}
		log.Infof("stopping container %s", c.Name)
		ectx, cancel := engineContext(ctx)
		err := p.docker.ContainerStop(ectx, c.ID, container.StopOptions{})
		now := inspectState(ectx, p.docker, c)
		cancel()
		if err != nil {
			return fail(StepStop, fmt.Errorf("cannot stop container %s: %v", c.Name, err))
		}
		res.Stopped = append(res.Stopped, now)
		p.holdAfterFirst(ctx, StepStop)
	}
	if err := ctx.Err(); err != nil {
		return fail(StepStop, err)
	}

	// 3. Save the containers' current files: putting the archive's back overwrites them.
	for _, cp := range p.ContainerParts {
		if err := ctx.Err(); err != nil {
			return fail(StepSave, err)
		}
		if err := sources.CopyFromContainer(ctx, p.docker, cp.Container, cp.Dir, cp.SavedTo); err != nil {
			return fail(StepSave, err)
		}
		res.Saved = append(res.Saved, ContainerCopy{Container: cp.Container.Name, Dir: cp.Dir, SavedTo: cp.SavedTo, Files: leftovers(cp.SavedTo)})
	}

	// 4. Move aside.
	for _, path := range p.MoveAside {
		if err := ctx.Err(); err != nil {
			return fail(StepMove, err)
		}
		mv, err := moveAside(path, p.Stamp)
		if err != nil {
			return fail(StepMove, err)
		}
		res.MovedAside = append(res.MovedAside, mv)
		p.holdAfterFirst(ctx, StepMove)
	}

	// 5. Put in place.
	for _, pl := range p.Placements {
		if err := ctx.Err(); err != nil {
			return fail(StepPlace, err)
		}
		if err := place(filepath.Join(x, filepath.FromSlash(pl.From)), pl.To); err != nil {
			return fail(StepPlace, err)
		}
		res.Placed = append(res.Placed, pl)
		if pl.Group == sources.GroupCouchDB {
			if err := applyOwner(pl.To, p.Manifest.CouchDB.DataDir); err != nil {
				return fail(StepPlace, err)
			}
		}
	}

	// 6. Copy the TLS files and credentials back into their (stopped) containers.
	for i, cp := range p.ContainerParts {
		if err := ctx.Err(); err != nil {
			return fail(StepPutBack, err)
		}
		cc := ContainerCopy{Container: cp.Container.Name, Dir: cp.Dir, SavedTo: cp.SavedTo}
		attempted = append(attempted, cc)
		files, err := putBack(ctx, p.docker, cp.Container, filepath.Join(x, filepath.FromSlash(cp.From)), cp.Dir)
		if err != nil {
			return fail(StepPutBack, err)
		}
		cc.Files = files
		res.PutBack = append(res.PutBack, cc)
		if extra := missingFrom(res.Saved[i].Files, files); len(extra) > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s:%s holds files the archive lacks, left in place: %s", cp.Container.Name, cp.Dir, strings.Join(extra, ", ")))
		}
	}

	// 7. Start what this run stopped, CouchDB first. A container that was down before the restore
	// (an exited leftover, a one-off) stays down: the restore gives back the running state it found.
	if err := ctx.Err(); err != nil {
		return fail(StepStart, err)
	}
	for i := len(res.Stopped) - 1; i >= 0; i-- {
		c := res.Stopped[i]
		if err := ctx.Err(); err != nil {
			return fail(StepStart, err)
		}
		log.Infof("starting container %s", c.Name)
		ectx, cancel := engineContext(ctx)
		err := p.docker.ContainerStart(ectx, c.ID, container.StartOptions{})
		cancel()
		if err != nil {
			return fail(StepStart, fmt.Errorf("cannot start container %s: %v", c.Name, err))
		}
		p.holdAfterFirst(ctx, StepStart)
	}
	if len(res.Stopped) > 0 {
		select {
		case <-time.After(settle):
		case <-ctx.Done():
		}
	}
	for i := len(res.Stopped) - 1; i >= 0; i-- {
		c := inspectState(context.WithoutCancel(ctx), p.docker, res.Stopped[i])
		res.Started = append(res.Started, c)
		if c.State != "running" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %s is %s, not running: see `docker logs %s`", c.Name, c.State, c.Name))
		}
	}
	stopped := map[string]bool{}
	for _, c := range res.Stopped {
		stopped[c.ID] = true
	}
	for _, c := range p.Containers {
		if !stopped[c.ID] {
			c = inspectState(context.WithoutCancel(ctx), p.docker, c)
			res.Notes = append(res.Notes, fmt.Sprintf("container %s was not running before the restore and is left %s; start it yourself if CHT needs it (docker start %s)", c.Name, c.State, c.Name))
		}
	}
	if p.envOrComposeChanged(res.MovedAside) {
		res.Notes = append(res.Notes, fmt.Sprintf("the restored .env or compose files differ from the ones moved aside; the running containers were made from the old ones: "+
			"restart the upgrade service so it recreates them from the restored files (cd %s && docker compose restart)", borg.ShellQuote(filepath.Dir(p.Host.EnvFile))))
	}
	res.OK = true
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// missingFrom lists the names in have that want lacks.
func missingFrom(have, want []string) []string {
	w := map[string]bool{}
	for _, n := range want {
		w[n] = true
	}
	var out []string
	for _, n := range have {
		if !w[n] {
			out = append(out, n)
		}
	}
	return out
}

// envOrComposeChanged says whether a placed .env or compose file differs from the file it replaced.
func (p *Plan) envOrComposeChanged(moved []Move) bool {
	aside := map[string]string{}
	for _, mv := range moved {
		aside[mv.From] = mv.To
	}
	for _, pl := range p.Placements {
		if pl.Group != sources.GroupEnv && pl.Group != sources.GroupCompose {
			continue
		}
		old, ok := aside[pl.To]
		if !ok {
			return true
		}
		a, err1 := os.ReadFile(old)
		b, err2 := os.ReadFile(pl.To)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return true
		}
	}
	return false
}

// engineDeadline bounds a Docker call that stops or starts a container. Such a call gets its own
// deadline instead of the run's cancellation: once the engine has begun, it stops or starts the
// container whatever the client does, so an interrupted run waits for the answer and reports what
// Docker did, not what was asked.
const engineDeadline = 3 * time.Minute

func engineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), engineDeadline)
}

// reconcile makes the result say what Docker says after a failure or an interruption: a container
// that was up when the run began to stop them and is down now was stopped by this run (also when
// its stop call failed or was cut short); ContainersNow holds every container's state now; once
// the start step was reached, Started holds the stopped ones that are up again.
func (p *Plan) reconcile(res *InPlaceResult, wasUp []ContainerState, starting bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := map[string]ContainerState{}
	res.ContainersNow = nil
	for _, c := range p.Containers {
		c = inspectState(ctx, p.docker, c)
		now[c.ID] = c
		res.ContainersNow = append(res.ContainersNow, c)
	}
	known := map[string]bool{}
	for _, c := range res.Stopped {
		known[c.ID] = true
	}
	for _, c := range wasUp {
		if n, ok := now[c.ID]; ok && !known[c.ID] && !isUp(n.State) && !strings.HasPrefix(n.State, "unknown") {
			res.Stopped = append(res.Stopped, n)
		}
	}
	if starting {
		res.Started = res.Started[:0]
		for i := len(res.Stopped) - 1; i >= 0; i-- {
			if n := now[res.Stopped[i].ID]; isUp(n.State) {
				res.Started = append(res.Started, n)
			}
		}
	}
}

// aftermath describes, after a failure at step, what state the host is in (the containers as
// Docker reports them now) and the commands that return it to the state before the restore:
// nothing is ever deleted, so all of it is there, and only the containers this run stopped are
// started again.
func (p *Plan) aftermath(res *InPlaceResult, step string, attempted []ContainerCopy) (state, recovery []string) {
	filesChanged := len(res.Saved) > 0 || len(res.MovedAside) > 0 || len(res.Placed) > 0 || len(attempted) > 0
	if !filesChanged && len(res.Stopped) == 0 {
		state = append(state, "nothing on this host was changed: CHT's containers, files and data are as they were")
		return state, nil
	}
	now := map[string]string{}
	for _, c := range res.ContainersNow {
		now[c.ID] = c.State
	}
	stoppedByRun := map[string]bool{}
	for _, c := range res.Stopped {
		stoppedByRun[c.ID] = true
	}
	for _, c := range res.ContainersNow {
		line := fmt.Sprintf("container %s is %s", c.Name, c.State)
		switch {
		case stoppedByRun[c.ID] && isUp(c.State):
			line += " (this restore stopped it and started it again)"
		case stoppedByRun[c.ID]:
			line += " (it was running; this restore stopped it)"
		default:
			line += " (as it was before this restore)"
		}
		state = append(state, line)
	}
	for _, s := range res.Saved {
		state = append(state, fmt.Sprintf("the files of %s:%s before the restore are saved in %s", s.Container, s.Dir, s.SavedTo))
	}
	for _, mv := range res.MovedAside {
		state = append(state, fmt.Sprintf("moved aside, intact: %s -> %s", mv.From, mv.To))
	}
	for _, pl := range res.Placed {
		state = append(state, fmt.Sprintf("put in place from the archive: %s", pl.To))
	}
	for _, a := range attempted {
		state = append(state, fmt.Sprintf("files from the archive were copied (perhaps partly) into %s:%s", a.Container, a.Dir))
	}
	var notDone []string
	reached := false
	for _, s := range steps {
		if s == step {
			reached = true
		}
		if reached {
			notDone = append(notDone, s)
		}
	}
	state = append(state, "not done: "+strings.Join(notDone, ", "))
	if step == StepStart {
		var rest []string
		for i := len(res.Stopped) - 1; i >= 0; i-- {
			if c := res.Stopped[i]; !isUp(now[c.ID]) {
				rest = append(rest, c.Name)
			}
		}
		if len(rest) > 0 {
			state = append(state, "everything else is restored: to finish the restore instead of going back, run docker start "+strings.Join(rest, " "))
		}
	}

	// Back to the state before: stop what this run started again, make way for the moved-aside
	// copies, move them back, put the containers' files back, start what this run stopped.
	var upAgain []string
	for _, c := range res.Stopped {
		if isUp(now[c.ID]) {
			upAgain = append(upAgain, c.Name)
		}
	}
	if filesChanged && len(upAgain) > 0 {
		recovery = append(recovery, "docker stop "+strings.Join(upAgain, " "))
	}
	taken := map[string]bool{}
	for i := len(res.Placed) - 1; i >= 0; i-- {
		to := res.Placed[i].To
		failed := asideName(to, "failed-restore", p.Stamp, taken)
		taken[failed] = true
		recovery = append(recovery, fmt.Sprintf("mv %s %s", borg.ShellQuote(to), borg.ShellQuote(failed)))
	}
	for i := len(res.MovedAside) - 1; i >= 0; i-- {
		mv := res.MovedAside[i]
		recovery = append(recovery, fmt.Sprintf("mv %s %s", borg.ShellQuote(mv.To), borg.ShellQuote(mv.From)))
	}
	for _, a := range attempted {
		recovery = append(recovery, fmt.Sprintf("docker cp -a %s %s", borg.ShellQuote(a.SavedTo+"/."), borg.ShellQuote(a.Container+":"+a.Dir)))
	}
	var startAgain []string
	for i := len(res.Stopped) - 1; i >= 0; i-- {
		if c := res.Stopped[i]; filesChanged || !isUp(now[c.ID]) {
			startAgain = append(startAgain, c.Name)
		}
	}
	if len(startAgain) > 0 {
		recovery = append(recovery, "docker start "+strings.Join(startAgain, " "))
	}
	return state, recovery
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
