package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/client"
)

// CouchDB's HTTP API is spoken here only: backup asks the live CouchDB for its figures, and the
// restore drill asks a CouchDB started on a restored copy for the same figures.

// CouchDBPort is the port CouchDB listens on inside its container.
const CouchDBPort = 5984

// CouchDBDataMount is where CHT's couchdb container mounts COUCHDB_DATA.
const CouchDBDataMount = "/opt/couchdb/data"

// DatabaseFigures is what CouchDB says about one database.
type DatabaseFigures struct {
	Name        string `json:"name"`
	DocCount    int64  `json:"doc_count"`
	DocDelCount int64  `json:"doc_del_count"`
	// UpdateSeq is the numeric part of update_seq ("1234-g1AAAA..." -> 1234).
	UpdateSeq int64 `json:"update_seq"`
	// OpenError says why CouchDB could not give this database's figures (drill findings only).
	OpenError string `json:"open_error,omitempty"`
}

// LiveCouchDB is what the live CouchDB said before borg read any of its files: the reference a
// restore drill checks a restored copy against. It never holds credentials.
type LiveCouchDB struct {
	// NotAsked says why the live CouchDB was not asked (Docker down, CouchDB not running, ...);
	// then there are no reference figures.
	NotAsked  string            `json:"not_asked,omitempty"`
	AskedAt   time.Time         `json:"asked_at,omitempty"`
	Container string            `json:"container,omitempty"`
	Image     string            `json:"image,omitempty"` // the couchdb container's image, for the drill
	Version   string            `json:"version,omitempty"`
	Databases []DatabaseFigures `json:"databases,omitempty"`
}

// ErrNoDatabase marks a database CouchDB does not have.
var ErrNoDatabase = errors.New("no such database")

// CouchDBClient asks one CouchDB for its figures over HTTP with basic auth. Credentials are never
// in a URL, a log line or an error.
type CouchDBClient struct {
	base     string // http://IP:5984
	user     string
	password string
	hc       *http.Client
}

// NewCouchDBClient is a client for the CouchDB at base (http://host:port).
func NewCouchDBClient(base, user, password string) *CouchDBClient {
	return &CouchDBClient{base: strings.TrimSuffix(base, "/"), user: user, password: password, hc: &http.Client{Timeout: 60 * time.Second}}
}

// Address is the CouchDB's address, without credentials.
func (c *CouchDBClient) Address() string { return c.base }

func (c *CouchDBClient) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("CouchDB at %s does not answer: %v", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("CouchDB at %s: %v", c.base, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return ErrNoDatabase
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("CouchDB at %s refused COUCHDB_USER's credentials (%s)", c.base, resp.Status)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("CouchDB at %s answered %s for %s", c.base, resp.Status, strings.SplitN(path, "?", 2)[0])
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("CouchDB at %s gave an answer that is not JSON: %v", c.base, err)
	}
	return nil
}

// Up says whether CouchDB is up and serving (GET /_up).
func (c *CouchDBClient) Up(ctx context.Context) error {
	var v map[string]any
	return c.get(ctx, "/_up", &v)
}

// Version is CouchDB's version (GET /).
func (c *CouchDBClient) Version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	err := c.get(ctx, "/", &v)
	return v.Version, err
}

// AllDbs lists the databases (GET /_all_dbs).
func (c *CouchDBClient) AllDbs(ctx context.Context) ([]string, error) {
	var dbs []string
	err := c.get(ctx, "/_all_dbs", &dbs)
	return dbs, err
}

// Database reads one database's figures (GET /{db}); ErrNoDatabase when it does not exist.
func (c *CouchDBClient) Database(ctx context.Context, name string) (DatabaseFigures, error) {
	var v struct {
		DocCount    int64           `json:"doc_count"`
		DocDelCount int64           `json:"doc_del_count"`
		UpdateSeq   json.RawMessage `json:"update_seq"`
	}
	f := DatabaseFigures{Name: name}
	if err := c.get(ctx, "/"+url.PathEscape(name), &v); err != nil {
		if errors.Is(err, ErrNoDatabase) {
			return f, fmt.Errorf("database %s: %w", name, err)
		}
		return f, err
	}
	seq, err := SeqNumber(v.UpdateSeq)
	if err != nil {
		return f, fmt.Errorf("database %s: %v", name, err)
	}
	f.DocCount, f.DocDelCount, f.UpdateSeq = v.DocCount, v.DocDelCount, seq
	return f, nil
}

// SeqNumber reads the numeric part of a CouchDB update_seq: a number (CouchDB 1.x), or a
// string "<number>-<opaque>" (CouchDB 2 and later).
func SeqNumber(raw json.RawMessage) (int64, error) {
	if t := strings.TrimSpace(string(raw)); t == "" || t == "null" {
		return 0, errors.New("CouchDB gave no update_seq")
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("update_seq %s is neither a number nor a string", raw)
	}
	n, err := strconv.ParseInt(strings.SplitN(s, "-", 2)[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("update_seq %q has no numeric part", s)
	}
	return n, nil
}

// Figures asks for the version, _all_dbs and each database's figures. A database listed but gone
// by the time it is asked (deleted meanwhile) is left out.
func (c *CouchDBClient) Figures(ctx context.Context) (version string, dbs []DatabaseFigures, err error) {
	if version, err = c.Version(ctx); err != nil {
		return "", nil, err
	}
	names, err := c.AllDbs(ctx)
	if err != nil {
		return version, nil, err
	}
	dbs = []DatabaseFigures{}
	for _, n := range names {
		f, err := c.Database(ctx, n)
		if errors.Is(err, ErrNoDatabase) {
			continue
		}
		if err != nil {
			return version, nil, err
		}
		dbs = append(dbs, f)
	}
	return version, dbs, nil
}

// ContainerCouchDBAddress is http://<the container's IP>:5984: CouchDB is reached at its container
// address, with no published port.
func ContainerCouchDBAddress(ctx context.Context, cli *client.Client, id string) (string, error) {
	ctx, cancel := DockerCall(ctx)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("cannot inspect container %s: %v", id, err)
	}
	if info.NetworkSettings != nil {
		for _, n := range info.NetworkSettings.Networks {
			if n != nil && n.IPAddress != "" {
				return fmt.Sprintf("http://%s:%d", n.IPAddress, CouchDBPort), nil
			}
		}
	}
	return "", fmt.Errorf("container %s has no IP address on any network", strings.TrimPrefix(info.Name, "/"))
}

// askLiveCouchDB compares COUCHDB_DATA with what the running couchdb container really mounts at
// /opt/couchdb/data (an error when they differ: a stale directory must never be archived in
// silence), then asks that CouchDB for its figures. Everything else that goes wrong is recorded
// in NotAsked, not an error: a backup of the files is still worth making. notes says what the
// user should know (CouchDB not running, so .env was trusted).
func askLiveCouchDB(ctx context.Context, cli *client.Client, dockerErr error, layout *Layout, env map[string]string) (live LiveCouchDB, notes []string, err error) {
	trustEnv := func(why string) {
		live.NotAsked = why
		notes = append(notes, fmt.Sprintf("%s, so COUCHDB_DATA from %s (%s) is backed up as it is, and the drill will have no live figures to compare with", why, layout.EnvFile, layout.CouchDBData))
	}
	if cli == nil {
		if dockerErr != nil {
			trustEnv("Docker could not be reached (" + oneLine(dockerErr) + ")")
		} else {
			trustEnv("Docker is not used by this backup")
		}
		return live, notes, nil
	}
	c, ferr := FindContainer(ctx, cli, layout.ProjectName, ServiceCouchDB)
	if ferr != nil {
		if ctx.Err() != nil {
			return live, nil, ctx.Err()
		}
		trustEnv("CouchDB's container cannot be found (" + oneLine(ferr) + ")")
		return live, notes, nil
	}
	live.Container, live.Image = c.Name, c.Image
	ictx, cancel := DockerCall(ctx)
	info, ierr := cli.ContainerInspect(ictx, c.ID)
	cancel()
	if ierr != nil {
		trustEnv(fmt.Sprintf("container %s cannot be inspected (%v)", c.Name, ierr))
		return live, notes, nil
	}
	if info.Config != nil && info.Config.Image != "" {
		live.Image = info.Config.Image
	}
	if info.State == nil || !info.State.Running {
		trustEnv(fmt.Sprintf("CouchDB is not running (container %s is %s)", c.Name, c.State))
		return live, notes, nil
	}
	for _, m := range info.Mounts {
		if strings.TrimSuffix(m.Destination, "/") != CouchDBDataMount {
			continue
		}
		if !samePath(m.Source, layout.CouchDBData) {
			return live, nil, fmt.Errorf("COUCHDB_DATA in %s is %s, but the running CouchDB (container %s) has %s mounted at %s: the first is not the live data; set COUCHDB_DATA to %s",
				layout.EnvFile, layout.CouchDBData, c.Name, m.Source, CouchDBDataMount, m.Source)
		}
	}
	user, password := env["COUCHDB_USER"], env["COUCHDB_PASSWORD"]
	if user == "" || password == "" {
		live.NotAsked = fmt.Sprintf("%s lacks COUCHDB_USER or COUCHDB_PASSWORD, so CouchDB was not asked for its figures", layout.EnvFile)
		return live, nil, nil
	}
	addr, aerr := ContainerCouchDBAddress(ctx, cli, c.ID)
	if aerr != nil {
		live.NotAsked = "CouchDB cannot be reached: " + aerr.Error()
		return live, nil, nil
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	version, dbs, qerr := NewCouchDBClient(addr, user, password).Figures(actx)
	if qerr != nil {
		if ctx.Err() != nil {
			return live, nil, ctx.Err()
		}
		live.NotAsked = "CouchDB did not give its figures: " + qerr.Error()
		return live, nil, nil
	}
	live.AskedAt, live.Version, live.Databases = time.Now().UTC().Truncate(time.Second), version, dbs
	return live, nil, nil
}

// samePath says whether a and b name the same directory, through symlinks.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, ";\n"); i > 0 {
		s = s[:i]
	}
	return s
}
