package sourcestest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// Naming says how test containers can be found.
type Naming int

const (
	// LabelsOnly containers carry the compose labels and names compose never
	// gives, so only a label lookup finds them.
	LabelsOnly Naming = iota
	// NamesV1 containers are named <project>_<service>_1 (compose v1, CHT
	// 4.x docs) and carry no compose labels, so only a name lookup finds them.
	NamesV1
	// NamesV2 containers are named <project>-<service>-1 (compose v2, CHT
	// 5.x docs) and carry no compose labels.
	NamesV2
)

func (n Naming) String() string {
	switch n {
	case LabelsOnly:
		return "labels"
	case NamesV1:
		return "v1-names"
	case NamesV2:
		return "v2-names"
	}
	return fmt.Sprintf("Naming(%d)", int(n))
}

// Directories the CHT containers keep their state in, as in CHT's images.
const (
	NginxPrivateDir  = "/etc/nginx/private/"
	CouchDBLocalDDir = "/opt/couchdb/etc/local.d/"
)

// TestContainer is one running container of the fixture.
type TestContainer struct {
	ID, Name, Service, Volume string
}

// Containers are the nginx and couchdb containers of a throwaway compose project.
type Containers struct {
	Client  *client.Client
	Project string
	Nginx   TestContainer
	CouchDB TestContainer
	// CouchURL is the real CouchDB's address (http://IP:5984), set by StartRealCHT.
	CouchURL string
	// Files are the regular files put into the containers, keyed by their
	// path in the container, e.g. /etc/nginx/private/cert.pem.
	Files map[string][]byte
	// Modes are those files' permission bits; Symlinks maps a link's
	// container path to its target; Dirs are extra directories.
	Modes    map[string]os.FileMode
	Symlinks map[string]string
	Dirs     []string
}

// DockerClient returns a client for the local engine. It skips the test,
// loudly, when not root, and fails it when the engine cannot be reached.
func DockerClient(t testing.TB) *client.Client {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: this test needs root and a running dockerd (run the tests as root after `bash scripts/test-env.sh`)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("sourcestest: docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		t.Fatalf("sourcestest: Docker engine unreachable: %v; start it with `bash scripts/test-env.sh`", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// UniqueProject returns a compose project name no other test uses.
func UniqueProject() string { return "chtt" + randHex(4) }

// StartContainers creates and starts an nginx and a couchdb container of
// compose project project ("" means a unique one; pass "cht" only when a
// test wants the real CHT names) from an image imported from a tarball, with
// named volumes <project>_cht-ssl and <project>_cht-credentials holding a
// TLS certificate and key and cluster-credentials.ini. t.Cleanup removes
// the containers and volumes; the small image is kept for the next test.
func StartContainers(t testing.TB, ctx context.Context, project string, naming Naming) *Containers {
	t.Helper()
	cli := DockerClient(t)
	if project == "" {
		project = UniqueProject()
	}
	ref, err := ensureImage(ctx, cli)
	if err != nil {
		t.Fatalf("sourcestest: %v", err)
	}
	cs := &Containers{
		Client:   cli,
		Project:  project,
		Files:    map[string][]byte{},
		Modes:    map[string]os.FileMode{},
		Symlinks: map[string]string{},
	}
	nginxFiles, err := nginxFileSpecs()
	if err != nil {
		t.Fatalf("sourcestest: %v", err)
	}
	admin := sha256.Sum256([]byte(randHex(8)))
	ini := fmt.Sprintf("; CouchDB state the CHT entrypoint writes\n[admins]\nmedic = -pbkdf2:sha256-%s,%s,600000\n\n[couch_httpd_auth]\nsecret = %s\n\n[couchdb]\nuuid = %s\n",
		hex.EncodeToString(admin[:]), randHex(16), randHex(16), randHex(16))

	couchFiles := []fileSpec{
		{name: "cluster-credentials.ini", body: []byte(ini), mode: 0o644, uid: 5984},
	}
	cs.Nginx = cs.startSleeper(t, ctx, ref, naming, "nginx", NginxPrivateDir, nginxFiles)
	cs.CouchDB = cs.startSleeper(t, ctx, ref, naming, "couchdb", CouchDBLocalDDir, couchFiles)
	return cs
}

// startSleeper starts one service's container from the sleeper image with files in dir.
func (cs *Containers) startSleeper(t testing.TB, ctx context.Context, ref string, naming Naming, service, dir string, files []fileSpec) TestContainer {
	t.Helper()
	c, err := startOne(ctx, cs.Client, ref, cs.Project, service, naming, dir, files)
	if c.ID != "" || c.Volume != "" {
		t.Cleanup(func() { removeOne(cs.Client, c) })
	}
	if err != nil {
		t.Fatalf("sourcestest: starting %s container: %v", service, err)
	}
	for _, f := range files {
		p := path.Join(dir, f.name)
		switch {
		case f.dir:
			cs.Dirs = append(cs.Dirs, p)
		case f.link != "":
			cs.Symlinks[p] = f.link
		default:
			cs.Files[p] = f.body
			cs.Modes[p] = f.mode
		}
	}
	return c
}

// nginxFileSpecs are the files of nginx's /etc/nginx/private/ in CHT, with a fresh certificate.
func nginxFileSpecs() ([]fileSpec, error) {
	cert, key, err := selfSigned("cht.test")
	if err != nil {
		return nil, err
	}
	return []fileSpec{
		{name: "cert.pem", body: cert, mode: 0o644},
		{name: "key.pem", body: key, mode: 0o600},
		{name: "deploy.sh", body: []byte("#!/bin/sh\ncp fullchain.pem cert.pem\n"), mode: 0o755},
		{name: "certbot", dir: true, mode: 0o755},
		{name: "certbot/.well-known", dir: true, mode: 0o755},
		{name: "fullchain.pem", link: "cert.pem"},
	}, nil
}

// Stop stops both containers (as `docker compose stop` would).
func (cs *Containers) Stop(t testing.TB, ctx context.Context) {
	t.Helper()
	timeout := 5
	for _, c := range []TestContainer{cs.Nginx, cs.CouchDB} {
		if err := cs.Client.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil {
			t.Fatalf("sourcestest: stopping %s: %v", c.Name, err)
		}
	}
}

// Remove removes one service's container now (to test a missing container).
func (cs *Containers) Remove(t testing.TB, c TestContainer) {
	t.Helper()
	if err := cs.Client.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatalf("sourcestest: removing %s: %v", c.Name, err)
	}
}

// ContainerNames lists, sorted, the container paths of everything put in a
// service's directory, for comparisons.
func (cs *Containers) ContainerNames(dir string) []string {
	var out []string
	for p := range cs.Files {
		if strings.HasPrefix(p, dir) {
			out = append(out, p)
		}
	}
	for p := range cs.Symlinks {
		if strings.HasPrefix(p, dir) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

type fileSpec struct {
	name string
	body []byte
	mode os.FileMode
	uid  int
	dir  bool
	link string
}

func startOne(ctx context.Context, cli *client.Client, ref, project, service string, naming Naming, dir string, files []fileSpec) (TestContainer, error) {
	c := TestContainer{Service: service}
	labels := map[string]string{}
	switch naming {
	case LabelsOnly:
		c.Name = fmt.Sprintf("sourcestest-%s-%s", randHex(4), service)
		labels["com.docker.compose.project"] = project
		labels["com.docker.compose.service"] = service
		labels["com.docker.compose.container-number"] = "1"
		labels["com.docker.compose.oneoff"] = "False"
	case NamesV1:
		c.Name = project + "_" + service + "_1"
	case NamesV2:
		c.Name = project + "-" + service + "-1"
	default:
		return c, fmt.Errorf("unknown naming %v", naming)
	}
	volName := project + "_cht-ssl"
	if service == "couchdb" {
		volName = project + "_cht-credentials"
	}
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: volName, Labels: map[string]string{"com.docker.compose.project": project}}); err != nil {
		return c, err
	}
	c.Volume = volName
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{Image: ref, Cmd: []string{"/bin/sleeper"}, Labels: labels},
		&container.HostConfig{
			NetworkMode: "none",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: volName, Target: strings.TrimSuffix(dir, "/")}},
		}, nil, nil, c.Name)
	if err != nil {
		return c, err
	}
	c.ID = resp.ID
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: int64(f.mode), Uid: f.uid, Gid: f.uid, ModTime: now}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return c, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.body); err != nil {
				return c, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return c, err
	}
	if err := cli.CopyToContainer(ctx, c.ID, dir, &buf, container.CopyToContainerOptions{}); err != nil {
		return c, fmt.Errorf("copying files into %s: %w", dir, err)
	}
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return c, err
	}
	return c, nil
}

func removeOne(cli *client.Client, c TestContainer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.ID != "" {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	if c.Volume != "" {
		_ = cli.VolumeRemove(ctx, c.Volume, true)
	}
}

var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

// ensureImage imports, once per process, an image whose rootfs holds only
// the sleeper and the directories CHT's images keep state in; no registry
// is needed. Its tag carries the sleeper's hash, so a present image is reused.
func ensureImage(ctx context.Context, cli *client.Client) (string, error) {
	imageOnce.Do(func() { imageRef, imageErr = importImage(ctx, cli) })
	return imageRef, imageErr
}

func importImage(ctx context.Context, cli *client.Client) (string, error) {
	bin, err := buildSleeper()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	ref := "cht-backup-test/sleeper:" + hex.EncodeToString(sum[:6])
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin", "dev", "etc", "etc/nginx", "etc/nginx/private", "opt", "opt/couchdb", "opt/couchdb/etc", "opt/couchdb/etc/local.d", "proc", "sys", "tmp"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			return "", err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/sleeper", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return "", err
	}
	if _, err := tw.Write(bin); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{})
	if err != nil {
		return "", fmt.Errorf("importing test image: %w", err)
	}
	defer rc.Close()
	// The engine reports failures inside the JSON progress stream.
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("importing test image: %w", err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("importing test image: %s", msg.Error)
		}
	}
	return ref, nil
}

// buildSleeper builds testdata/sleeper statically for the engine's Linux.
func buildSleeper() ([]byte, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("cannot locate sourcestest's source directory")
	}
	src := filepath.Join(filepath.Dir(self), "testdata", "sleeper")
	out, err := os.MkdirTemp("", "sourcestest-sleeper-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(out, "sleeper")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "main.go")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the test containers' sleeper in %s: %v\n%s", src, err, msg)
	}
	return os.ReadFile(bin)
}

// selfSigned makes a throwaway certificate and key in PEM.
func selfSigned(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
