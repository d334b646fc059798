package sourcestest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// RealCouchDBImage is the real Apache CouchDB that scripts/test-env.sh imports from
// ../shared/couchdb/ (a root-filesystem tarball; no image registry is reachable).
const RealCouchDBImage = "couchdb-real:3"

// NeedRealCouchDB makes sure the real CouchDB image is loaded: it imports it with
// ../shared/couchdb/load-image.sh when the tarball is there and the image is not. It skips the
// test, loudly, only when there is no tarball either (an outside clone without ../shared). It
// fails the test when Docker is down or the import fails.
func NeedRealCouchDB(t testing.TB) *client.Client {
	t.Helper()
	cli := DockerClient(t)
	realImageOnce.Do(func() { realImageErr = loadRealCouchDB(cli) })
	if errors.Is(realImageErr, errNoTarball) {
		t.Skipf("SKIPPED: the real CouchDB image %s is not loaded and %s is missing (an outside clone has no ../shared); "+
			"put shared/couchdb/ beside the repository and run scripts/test-env.sh", RealCouchDBImage, sharedCouchDBDir())
	}
	if realImageErr != nil {
		t.Fatalf("sourcestest: %v", realImageErr)
	}
	return cli
}

var (
	realImageOnce sync.Once
	realImageErr  error
	errNoTarball  = errors.New("no CouchDB tarball")
)

func loadRealCouchDB(cli *client.Client) error {
	if _, err := cli.ImageInspect(context.Background(), RealCouchDBImage); err == nil {
		return nil
	} else if !client.IsErrNotFound(err) {
		return fmt.Errorf("inspecting %s: %v", RealCouchDBImage, err)
	}
	loader := filepath.Join(sharedCouchDBDir(), "load-image.sh")
	if _, err := os.Stat(filepath.Join(sharedCouchDBDir(), "couchdb-3.4.3-rootfs.tar.xz")); err != nil {
		return errNoTarball
	}
	if out, err := exec.Command("bash", loader, RealCouchDBImage).CombinedOutput(); err != nil {
		return fmt.Errorf("loading the real CouchDB image with %s: %v\n%s", loader, err, out)
	}
	return nil
}

// sharedCouchDBDir is where the CouchDB tarball is expected: ../shared/couchdb from the repository.
func sharedCouchDBDir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", "..", "..", "shared", "couchdb"))
}

// StartRealCHT starts the containers of a CHT-like compose project for tree (which should be
// written with EmptyCouchDB): nginx from the sleeper image with its TLS files, and couchdb from
// the real CouchDB image with the compose labels, tree.CouchDBData bind-mounted at
// /opt/couchdb/data, the credentials volume at /opt/couchdb/etc/local.d and the .env's
// COUCHDB_USER/COUCHDB_PASSWORD. It waits until CouchDB answers; cs.CouchURL is its address.
// t.Cleanup removes the containers and volumes.
func StartRealCHT(t testing.TB, ctx context.Context, tree *Tree) *Containers {
	t.Helper()
	cli := NeedRealCouchDB(t)
	ref, err := ensureImage(ctx, cli)
	if err != nil {
		t.Fatalf("sourcestest: %v", err)
	}
	cs := &Containers{Client: cli, Project: tree.Project, Files: map[string][]byte{}, Modes: map[string]os.FileMode{}, Symlinks: map[string]string{}}
	nginxFiles, err := nginxFileSpecs()
	if err != nil {
		t.Fatalf("sourcestest: %v", err)
	}
	cs.Nginx = cs.startSleeper(t, ctx, ref, LabelsOnly, "nginx", NginxPrivateDir, nginxFiles)

	c := TestContainer{Service: "couchdb", Name: "sourcestest-" + randHex(4) + "-couchdb", Volume: tree.Project + "_cht-credentials"}
	t.Cleanup(func() { removeOne(cli, c) })
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: c.Volume, Labels: map[string]string{"com.docker.compose.project": tree.Project}}); err != nil {
		t.Fatalf("sourcestest: %v", err)
	}
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{
			Image: RealCouchDBImage,
			Env:   []string{"COUCHDB_USER=" + tree.Env["COUCHDB_USER"], "COUCHDB_PASSWORD=" + tree.Password},
			Labels: map[string]string{
				"com.docker.compose.project":          tree.Project,
				"com.docker.compose.service":          "couchdb",
				"com.docker.compose.container-number": "1",
				"com.docker.compose.oneoff":           "False",
			},
		},
		&container.HostConfig{Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: tree.CouchDBData, Target: "/opt/couchdb/data"},
			{Type: mount.TypeVolume, Source: c.Volume, Target: strings.TrimSuffix(CouchDBLocalDDir, "/")},
		}}, nil, nil, c.Name)
	if err != nil {
		t.Fatalf("sourcestest: creating the CouchDB container: %v", err)
	}
	c.ID = resp.ID
	cs.CouchDB = c
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatalf("sourcestest: starting the CouchDB container: %v", err)
	}
	cs.CouchURL = cs.WaitCouchDB(t, ctx)
	return cs
}

// WaitCouchDB waits until the couchdb container answers (after a start or a restart) and returns
// its address, http://IP:5984.
func (cs *Containers) WaitCouchDB(t testing.TB, ctx context.Context) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		info, err := cs.Client.ContainerInspect(ctx, cs.CouchDB.ID)
		if err != nil {
			t.Fatalf("sourcestest: %v", err)
		}
		ip := ""
		if info.NetworkSettings != nil {
			for _, n := range info.NetworkSettings.Networks {
				if n.IPAddress != "" {
					ip = n.IPAddress
				}
			}
		}
		if ip != "" {
			url := "http://" + ip + ":5984"
			if st, _, err := (&Couch{URL: url}).Do(ctx, "GET", "/_up", nil); err == nil && st == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sourcestest: CouchDB in %s did not answer within 90 s (state %v)", cs.CouchDB.Name, info.State)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Couch speaks CouchDB's HTTP API for tests that seed and load a real CouchDB.
type Couch struct {
	URL, User, Password string
}

// Do sends one request (body marshalled as JSON unless it is []byte) and returns the status and body.
func (c *Couch) Do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", ctype)
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// Must sends one request and fails the test unless the status is 2xx; it decodes the answer
// into out when out is not nil.
func (c *Couch) Must(t testing.TB, method, path string, body, out any) {
	t.Helper()
	st, data, err := c.Do(context.Background(), method, path, body)
	if err != nil || st/100 != 2 {
		t.Fatalf("sourcestest: CouchDB %s %s: status %d, %v: %s", method, path, st, err, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("sourcestest: CouchDB %s %s: %v: %s", method, path, err, data)
		}
	}
}

// CouchFor is a client for cs's CouchDB with the tree's admin credentials.
func (cs *Containers) CouchFor(tree *Tree) *Couch {
	return &Couch{URL: cs.CouchURL, User: tree.Env["COUCHDB_USER"], Password: tree.Password}
}

// String names the CouchDB for messages, without credentials.
func (c *Couch) String() string { return fmt.Sprintf("CouchDB at %s", c.URL) }
