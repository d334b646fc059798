package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"
)

// When the CouchDB drill runs (--couchdb).
const (
	DrillAuto   = "auto"   // when Docker and a CouchDB image are there; says so when not
	DrillAlways = "always" // a drill that cannot run is a failure
	DrillNever  = "never"
)

// Outcomes of a CouchDB drill.
const (
	DrillPassed = "passed"
	DrillFailed = "failed"
	DrillNotRun = "not run"
)

// drillLabel marks the drill's containers and networks, its value the pid of the run that made
// them, so a later run removes what a killed one left.
const drillLabel = "cht-backup.drill-pid"

// drillStartTimeout bounds how long CouchDB may take to open the copy and answer.
var drillStartTimeout = 3 * time.Minute

// ParseDrillMode checks a --couchdb value ("" means auto).
func ParseDrillMode(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", DrillAuto:
		return DrillAuto, nil
	case DrillAlways:
		return DrillAlways, nil
	case DrillNever:
		return DrillNever, nil
	}
	return "", fmt.Errorf("--couchdb takes auto, always or never, not %q", s)
}

// DrillOptions say whether and how to start CouchDB on a restored copy.
type DrillOptions struct {
	Mode string // DrillAuto, DrillAlways or DrillNever; "" means auto
	// Docker is the engine to run the drill on; when nil, DockerErr says why there is none.
	Docker    *client.Client
	DockerErr error
	Log       logrus.FieldLogger
}

// DatabaseFinding is what CouchDB said about one database of the restored copy, next to what the
// live CouchDB said at backup time.
type DatabaseFinding struct {
	Name     string                   `json:"name"`
	OK       bool                     `json:"ok"`
	Recorded *sources.DatabaseFigures `json:"recorded,omitempty"` // the live CouchDB, before borg read
	Restored *sources.DatabaseFigures `json:"restored,omitempty"` // CouchDB on the restored copy
	Problem  string                   `json:"problem,omitempty"`
	Note     string                   `json:"note,omitempty"`
}

// CouchDBDrill is the outcome of starting CouchDB on a restored copy.
type CouchDBDrill struct {
	Status  string `json:"status"`           // DrillPassed, DrillFailed or DrillNotRun
	Reason  string `json:"reason,omitempty"` // why it failed or did not run
	Image   string `json:"image,omitempty"`
	Version string `json:"version,omitempty"` // what the drill's CouchDB reports
	// Reference says what the figures are compared with: the live CouchDB's, or none and why.
	Reference string            `json:"reference"`
	Databases []DatabaseFinding `json:"databases"`
}

// OK says whether the drill passed or, in auto mode, could not run.
func (d *CouchDBDrill) OK() bool { return d == nil || d.Status != DrillFailed }

// DrillCouchDB starts the host's own CouchDB image on dataDir, a restored copy it may change (the
// image's entrypoint gives it to CouchDB's uid), in a container with no published port on a
// Docker network of its own that has no way out, and asks it for each database's figures: every
// database the live CouchDB had when the backup began must open with doc_count+doc_del_count
// and update_seq at least as high as then. The container and the network are removed on every
// way out, a cancelled ctx (SIGINT, SIGTERM) included.
func DrillCouchDB(ctx context.Context, o DrillOptions, m *sources.Manifest, dataDir string) *CouchDBDrill {
	log := discard(o.Log)
	d := &CouchDBDrill{Databases: []DatabaseFinding{}}
	mode, err := ParseDrillMode(o.Mode)
	if err != nil {
		d.Status, d.Reason = DrillFailed, err.Error()
		return d
	}
	if mode == DrillNever {
		d.Status, d.Reason, d.Reference = DrillNotRun, "skipped on request (--couchdb never)", "none"
		return d
	}
	live := m.CouchDBLive
	switch {
	case live == nil:
		d.Reference = "none: this archive was made before cht-backup recorded the live CouchDB's figures"
	case live.NotAsked != "":
		d.Reference = "none: at backup time " + live.NotAsked
	default:
		d.Reference = fmt.Sprintf("the live CouchDB %s at %s, before borg read its files", live.Version, live.AskedAt.Format(time.RFC3339))
	}
	cannot := func(why string) *CouchDBDrill {
		d.Reason = why
		d.Status = DrillNotRun
		if mode == DrillAlways {
			d.Status = DrillFailed
		}
		return d
	}
	if o.Docker == nil {
		why := "Docker cannot be used"
		if o.DockerErr != nil {
			why = o.DockerErr.Error()
		}
		return cannot("CouchDB could not be started on the copy: " + why)
	}
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() {
		return cannot(fmt.Sprintf("the restored copy has no CouchDB data directory (%s)", dataDir))
	}
	image, why := drillImage(ctx, o.Docker, m)
	if image == "" {
		return cannot("no CouchDB image to start on the copy: " + why)
	}
	d.Image = image
	removeStaleDrills(ctx, o.Docker, log)

	figures, version, err := runDrillContainer(ctx, o.Docker, image, dataDir, m, log)
	d.Version = version
	if err != nil {
		d.Status, d.Reason = DrillFailed, err.Error()
		return d
	}
	// Databases whose shard files are not in the copy at all were deleted while borg read.
	inv, _ := sources.InventoryCouchDB(context.WithoutCancel(ctx), dataDir)
	hasShards := map[string]bool{}
	for _, db := range inv.Databases {
		hasShards[db.Name] = db.ShardFiles > 0
	}
	var failed []string
	if live != nil && live.NotAsked == "" {
		seen := map[string]bool{}
		for _, rec := range live.Databases {
			rec := rec
			seen[rec.Name] = true
			f := DatabaseFinding{Name: rec.Name, Recorded: &rec}
			got, ok := figures[rec.Name]
			switch {
			case !ok && !hasShards[rec.Name]:
				f.OK, f.Note = true, "deleted while the backup ran: none of its shard files were there when borg read them"
			case !ok:
				f.Problem = "CouchDB cannot open it in the restored copy"
			case got.OpenError != "":
				f.Problem = "CouchDB cannot open it in the restored copy: " + got.OpenError
			default:
				f.Restored = &got
				f.OK = true
				if got.DocCount+got.DocDelCount < rec.DocCount+rec.DocDelCount {
					f.OK, f.Problem = false, fmt.Sprintf("%d documents (with deleted ones), fewer than the %d the live CouchDB had", got.DocCount+got.DocDelCount, rec.DocCount+rec.DocDelCount)
				} else if got.UpdateSeq < rec.UpdateSeq {
					f.OK, f.Problem = false, fmt.Sprintf("update sequence %d, behind the %d the live CouchDB had", got.UpdateSeq, rec.UpdateSeq)
				}
			}
			if !f.OK {
				failed = append(failed, fmt.Sprintf("database %s: %s", rec.Name, f.Problem))
			}
			d.Databases = append(d.Databases, f)
		}
		for _, name := range sortedKeys(figures) {
			if !seen[name] {
				got := figures[name]
				f := DatabaseFinding{Name: name, OK: true, Restored: &got, Note: "created while the backup ran"}
				if got.OpenError != "" {
					f = DatabaseFinding{Name: name, Problem: "CouchDB cannot open it in the restored copy: " + got.OpenError}
					failed = append(failed, fmt.Sprintf("database %s: %s", name, f.Problem))
				}
				d.Databases = append(d.Databases, f)
			}
		}
	} else {
		for _, name := range sortedKeys(figures) {
			got := figures[name]
			f := DatabaseFinding{Name: name, OK: true, Restored: &got, Note: "opens; no live figures to compare with"}
			if got.OpenError != "" {
				f = DatabaseFinding{Name: name, Problem: "CouchDB cannot open it in the restored copy: " + got.OpenError}
				failed = append(failed, fmt.Sprintf("database %s: %s", name, f.Problem))
			}
			d.Databases = append(d.Databases, f)
		}
	}
	if len(failed) > 0 {
		d.Status, d.Reason = DrillFailed, "CouchDB on the restored copy: "+strings.Join(failed, "; ")
		return d
	}
	d.Status = DrillPassed
	return d
}

// drillImage picks the image to start: the one the host's couchdb container runs now, else the
// one recorded at backup time when it is on this host. It must be a CouchDB image (port 5984).
func drillImage(ctx context.Context, cli *client.Client, m *sources.Manifest) (string, string) {
	var cands []string
	if c, err := sources.FindContainer(ctx, cli, m.ProjectName, sources.ServiceCouchDB); err == nil {
		if info, err := cli.ContainerInspect(ctx, c.ID); err == nil && info.Config != nil && info.Config.Image != "" {
			cands = append(cands, info.Config.Image)
		} else {
			cands = append(cands, c.Image)
		}
	}
	if m.CouchDBLive != nil && m.CouchDBLive.Image != "" {
		cands = append(cands, m.CouchDBLive.Image)
	}
	if c, ok := m.Containers[sources.ServiceCouchDB]; ok && c.Image != "" {
		cands = append(cands, c.Image)
	}
	if len(cands) == 0 {
		return "", fmt.Sprintf("compose project %q has no couchdb container here, and the archive names no image", m.ProjectName)
	}
	var why []string
	for _, img := range cands {
		info, _, err := cli.ImageInspectWithRaw(ctx, img)
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("%s is not on this host", img))
		case info.Config == nil || !hasPort(info.Config.ExposedPorts, "5984/tcp"):
			why = append(why, fmt.Sprintf("%s is not a CouchDB image (it exposes no port 5984)", img))
		default:
			return img, ""
		}
	}
	return "", strings.Join(why, "; ")
}

func hasPort[M ~map[K]V, K ~string, V any](ports M, want string) bool {
	_, ok := ports[K(want)]
	return ok
}

// runDrillContainer starts CouchDB on dataDir and returns each database's figures.
func runDrillContainer(ctx context.Context, cli *client.Client, image, dataDir string, m *sources.Manifest, log logrus.FieldLogger) (map[string]sources.DatabaseFigures, string, error) {
	name := "cht-backup-drill-" + randomHex(6)
	labels := map[string]string{drillLabel: strconv.Itoa(os.Getpid())}
	// Cleanup must run even when ctx was cancelled by a signal.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	}
	// Both are removed by name, also when their creation was cancelled by a signal: the engine may
	// finish a create whose caller has gone, so a cancelled run looks once more a moment later.
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		for try := 0; try < 2; try++ {
			if try > 0 {
				if ctx.Err() == nil {
					break
				}
				time.Sleep(time.Second)
			}
			if err := cli.ContainerRemove(c, name, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
				log.Errorf("cannot remove the drill's container %s: %v; remove it with `docker rm -f %s`", name, err, name)
			}
			if err := cli.NetworkRemove(c, name); err != nil && !client.IsErrNotFound(err) {
				log.Errorf("cannot remove the drill's Docker network %s: %v; remove it with `docker network rm %s`", name, err, name)
			}
		}
	}()
	// Every call to the engine has a deadline: one that accepts and never answers must not hang
	// the drill (the wait for CouchDB itself has its own, drillStartTimeout).
	call := func(f func(ctx context.Context) error) error {
		cctx, cancel := sources.DockerCall(ctx)
		defer cancel()
		return f(cctx)
	}
	if err := call(func(ctx context.Context) error {
		_, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Internal: true, Labels: labels})
		return err
	}); err != nil {
		return nil, "", fmt.Errorf("cannot create the drill's Docker network: %v", err)
	}
	user, password := "cht-backup-drill", randomHex(16)
	var resp container.CreateResponse
	err := call(func(ctx context.Context) (err error) {
		resp, err = cli.ContainerCreate(ctx,
			&container.Config{
				Image:  image,
				Env:    []string{"COUCHDB_USER=" + user, "COUCHDB_PASSWORD=" + password, "COUCHDB_SECRET=" + randomHex(16)},
				Labels: labels,
			},
			&container.HostConfig{
				NetworkMode: container.NetworkMode(name),
				Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: dataDir, Target: sources.CouchDBDataMount}},
			}, nil, nil, name)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("cannot create the drill's CouchDB container from %s: %v", image, err)
	}
	if err := call(func(ctx context.Context) error { return cli.ContainerStart(ctx, resp.ID, container.StartOptions{}) }); err != nil {
		return nil, "", fmt.Errorf("cannot start CouchDB (%s) on the restored copy: %v", image, err)
	}
	addr, err := sources.ContainerCouchDBAddress(ctx, cli, resp.ID)
	if err != nil {
		return nil, "", err
	}
	log.Infof("restore drill: CouchDB (%s) started on the restored copy in container %s, network %s (no way out)", image, name, name)
	couch := sources.NewCouchDBClient(addr, user, password)
	deadline := time.Now().Add(drillStartTimeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		if couch.Up(ctx) == nil {
			break
		}
		var info container.InspectResponse
		if err := call(func(ctx context.Context) (err error) { info, err = cli.ContainerInspect(ctx, resp.ID); return err }); err == nil && info.State != nil && !info.State.Running {
			return nil, "", fmt.Errorf("CouchDB (%s) stopped on the restored copy with exit code %d: %s", image, info.State.ExitCode, containerLogTail(ctx, cli, resp.ID))
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("CouchDB (%s) did not answer on the restored copy within %s: %s", image, drillStartTimeout, containerLogTail(ctx, cli, resp.ID))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	version, err := couch.Version(ctx)
	if err != nil {
		return nil, "", err
	}
	names, err := couch.AllDbs(ctx)
	if err != nil {
		return nil, version, err
	}
	if m.CouchDBLive != nil {
		for _, rec := range m.CouchDBLive.Databases {
			names = append(names, rec.Name)
		}
	}
	out := map[string]sources.DatabaseFigures{}
	for _, n := range names {
		if _, done := out[n]; done {
			continue
		}
		f, err := couch.Database(ctx, n)
		if errors.Is(err, sources.ErrNoDatabase) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, version, ctx.Err()
			}
			f.OpenError = err.Error() // this database, not the drill: the others are still asked
		}
		out[n] = f
	}
	return out, version, nil
}

// containerLogTail is the last lines a container wrote, for an error message.
func containerLogTail(ctx context.Context, cli *client.Client, id string) string {
	lctx, cancel := sources.DockerCall(context.WithoutCancel(ctx))
	defer cancel()
	rc, err := cli.ContainerLogs(lctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return "no log"
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 4096))
	// The engine frames each line with an 8-byte header; keep the printable text.
	s := strings.Map(func(r rune) rune {
		if r == '\n' {
			return ' '
		}
		if r < 32 || r == 0xfffd {
			return -1
		}
		return r
	}, string(b))
	return "its log ends: " + strings.TrimSpace(s)
}

// removeStaleDrills removes drill containers and networks left by runs that no longer exist.
func removeStaleDrills(ctx context.Context, cli *client.Client, log logrus.FieldLogger) {
	f := filters.NewArgs(filters.Arg("label", drillLabel))
	stale := func(labels map[string]string) bool {
		pid, err := strconv.Atoi(labels[drillLabel])
		return err == nil && pid > 0 && !processAlive(pid)
	}
	if cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f}); err == nil {
		for _, c := range cs {
			if stale(c.Labels) {
				log.Warnf("removing drill container %s left by a run that was killed", c.ID[:12])
				_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
	}
	if ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f}); err == nil {
		for _, n := range ns {
			if stale(n.Labels) {
				log.Warnf("removing drill network %s left by a run that was killed", n.Name)
				_ = cli.NetworkRemove(ctx, n.ID)
			}
		}
	}
}

// copyForDrill copies a restored CouchDB data directory into dst (which must not exist) for a
// drill that may change it, so the copy that is put in place stays as borg extracted it.
func copyForDrill(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, fi.Mode().Perm()|0o700)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case fi.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}

func sortedKeys(m map[string]sources.DatabaseFigures) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
