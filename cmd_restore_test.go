package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// restoreArgs are the flags every restore of this world carries.
func (w *world) restoreArgs(h *chtHost, args ...string) []string {
	out := append([]string{"restore"}, args...)
	out = append(out, "--repo", w.remoteRepo(), "--cht-dir", h.tree.Root)
	return append(out, w.common(testEnv["SSH_SHELL_KEY"])...)
}

// mustBackup backs the host up and returns the archive's name.
func (w *world) mustBackup(t *testing.T, h *chtHost) string {
	t.Helper()
	r := w.run(w.backupArgs(h, "--json")...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	return decodeReport(t, r).Repositories[0].Archive
}

// fileState is what a restore must bring back of a file: its bytes, mode and owner.
type fileState struct {
	body     []byte
	mode     os.FileMode
	uid, gid uint32
}

func statFile(t *testing.T, p string) fileState {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	fs := fileState{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
	if fi.Mode().IsRegular() {
		if fs.body, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

// treeState records the state of every host file the tree holds, and of the CouchDB directory.
func treeState(t *testing.T, tree *sourcestest.Tree) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	for _, p := range append(append(append([]string{tree.EnvFile, tree.CouchDBData}, tree.ComposeFiles...), tree.CouchFiles...), tree.ViewFiles...) {
		m[p] = statFile(t, p)
	}
	return m
}

// sameState fails the test when got differs from want in bytes, mode or owner.
func sameState(t *testing.T, what string, want fileState, gotPath string) {
	t.Helper()
	if _, err := os.Lstat(gotPath); err != nil {
		t.Errorf("%s: %s is missing", what, gotPath)
		return
	}
	got := statFile(t, gotPath)
	if !bytes.Equal(got.body, want.body) {
		t.Errorf("%s: %s differs (%d bytes, want %d)", what, gotPath, len(got.body), len(want.body))
	}
	if got.mode != want.mode || got.uid != want.uid || got.gid != want.gid {
		t.Errorf("%s: %s has mode %v owner %d:%d, want %v %d:%d", what, gotPath, got.mode, got.uid, got.gid, want.mode, want.uid, want.gid)
	}
}

// containerFiles reads a directory out of a container: path (relative to dir) -> header and bytes.
func containerFiles(t *testing.T, cli *client.Client, id, dir string) map[string]containerFile {
	t.Helper()
	rc, _, err := cli.CopyFromContainer(context.Background(), id, dir)
	if err != nil {
		t.Fatalf("reading %s out of %s: %v", dir, id, err)
	}
	defer rc.Close()
	out := map[string]containerFile{}
	tr := tar.NewReader(rc)
	top := filepath.Base(strings.TrimSuffix(dir, "/"))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(h.Name, top), "/")
		body, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(rel, "/")] = containerFile{h, body}
	}
	return out
}

type containerFile struct {
	h    *tar.Header
	body []byte
}

// checkContainerFiles compares a container directory with what the fixture put there.
func checkContainerFiles(t *testing.T, cs *sourcestest.Containers, id, dir string) {
	t.Helper()
	got := containerFiles(t, cs.Client, id, dir)
	for p, want := range cs.Files {
		rel, ok := strings.CutPrefix(p, dir)
		if !ok {
			continue
		}
		f, ok := got[rel]
		if !ok {
			t.Errorf("container %s: %s is missing", id[:12], p)
			continue
		}
		if !bytes.Equal(f.body, want) || os.FileMode(f.h.Mode).Perm() != cs.Modes[p] {
			t.Errorf("container %s: %s differs (mode %o, want %o)", id[:12], p, f.h.Mode, cs.Modes[p])
		}
		if strings.HasSuffix(p, "cluster-credentials.ini") && f.h.Uid != sourcestest.CouchDBUID {
			t.Errorf("container %s: %s owned by %d, want %d", id[:12], p, f.h.Uid, sourcestest.CouchDBUID)
		}
	}
	for p, target := range cs.Symlinks {
		if rel, ok := strings.CutPrefix(p, dir); ok {
			if f, ok := got[rel]; !ok || f.h.Linkname != target {
				t.Errorf("container %s: symlink %s missing or wrong", id[:12], p)
			}
		}
	}
}

// copyIntoContainer writes files (name -> body; a name ending in "/" is a directory) into dir.
func copyIntoContainer(t *testing.T, cli *client.Client, id, dir string, files map[string]string, overwriteDirs bool) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A tar needs a directory before the files in it; map order is random, sorted order is not.
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body := files[name]
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	if err := cli.CopyToContainer(context.Background(), id, dir, &buf, container.CopyToContainerOptions{AllowOverwriteDirWithFile: overwriteDirs}); err != nil {
		t.Fatalf("copying into %s: %v", id, err)
	}
}

// recreateWithEmptyVolume replaces a fixture container by one with the same name and a new, empty
// volume, as on a host whose docker volume was lost; it returns the new container's id.
func recreateWithEmptyVolume(t *testing.T, cli *client.Client, c sourcestest.TestContainer) string {
	t.Helper()
	ctx := context.Background()
	info, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := cli.VolumeRemove(ctx, c.Volume, true); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: c.Volume}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.ContainerCreate(ctx, info.Config, &container.HostConfig{NetworkMode: "none", Mounts: info.HostConfig.Mounts}, nil, nil, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

func running(t *testing.T, cli *client.Client, id string) bool {
	t.Helper()
	info, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return info.State != nil && info.State.Running
}

func noSecrets(t *testing.T, h *chtHost, r result) {
	t.Helper()
	for _, s := range h.tree.SecretValues() {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Fatalf("an .env value was printed:\n%s", r)
		}
	}
}

// backup, then restore NAME --target DIR: every file, container files included, comes back
// byte-identical with its mode and owner; a non-empty DIR needs --force, which moves aside.
func TestRestoreTargetByteIdentical(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	name := w.mustBackup(t, h)
	before := treeState(t, h.tree)

	dir := filepath.Join(w.dir, "restored")
	r := w.run(w.restoreArgs(h, name, "--target", dir)...) // flags after the name
	if r.code != 0 {
		t.Fatalf("restore --target:\n%s", r)
	}
	noSecrets(t, h, r)
	t.Logf("restore --target:\n%s", r)
	if !strings.Contains(r.stdout, "verdict: OK") {
		t.Errorf("no verdict:\n%s", r)
	}
	tr := h.tree
	sameState(t, ".env", before[tr.EnvFile], filepath.Join(dir, "upgrade-service", ".env"))
	for _, f := range tr.ComposeFiles {
		sub := "compose"
		if filepath.Dir(f) == filepath.Dir(tr.EnvFile) {
			sub = "upgrade-service"
		}
		sameState(t, "compose", before[f], filepath.Join(dir, sub, filepath.Base(f)))
	}
	sameState(t, "CouchDB directory", before[tr.CouchDBData], filepath.Join(dir, "couchdb"))
	for _, f := range append(append([]string{}, tr.CouchFiles...), tr.ViewFiles...) {
		rel, _ := filepath.Rel(tr.CouchDBData, f)
		sameState(t, "CouchDB", before[f], filepath.Join(dir, "couchdb", rel))
		if before[f].uid != sourcestest.CouchDBUID {
			t.Fatalf("fixture: %s not owned by CouchDB's uid", f)
		}
	}
	cs := h.containers
	for p, body := range cs.Files {
		local := filepath.Join(dir, "tls", strings.TrimPrefix(p, sourcestest.NginxPrivateDir))
		if strings.HasPrefix(p, sourcestest.CouchDBLocalDDir) {
			local = filepath.Join(dir, "credentials", strings.TrimPrefix(p, sourcestest.CouchDBLocalDDir))
		}
		want := fileState{body: body, mode: cs.Modes[p]}
		if strings.HasSuffix(p, "cluster-credentials.ini") {
			want.uid, want.gid = sourcestest.CouchDBUID, sourcestest.CouchDBUID
		}
		sameState(t, "container file", want, local)
	}
	for p, target := range cs.Symlinks {
		if got, err := os.Readlink(filepath.Join(dir, "tls", strings.TrimPrefix(p, sourcestest.NginxPrivateDir))); err != nil || got != target {
			t.Errorf("symlink %s: %q %v, want %q", p, got, err, target)
		}
	}
	for _, d := range cs.Dirs {
		if fi, err := os.Stat(filepath.Join(dir, "tls", strings.TrimPrefix(d, sourcestest.NginxPrivateDir))); err != nil || !fi.IsDir() {
			t.Errorf("directory %s missing", d)
		}
	}
	if m, err := sources.ReadManifest(filepath.Join(dir, "manifest.json")); err != nil || m.CHTVersion != tr.CHTVersion {
		t.Errorf("manifest: %v", err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("a new target must be mode 0700, is %v", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".cht-backup-restore-*")); len(left) > 0 {
		t.Errorf("scratch left in the target: %v", left)
	}

	// A non-empty target is refused and left alone; --force moves aside what it replaces.
	r = w.run(w.restoreArgs(h, "latest", "--target", dir)...)
	if r.code != 2 || !strings.Contains(r.stderr, "not empty") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("non-empty target without --force must be refused:\n%s", r)
	}
	sameState(t, "after a refused restore", before[tr.EnvFile], filepath.Join(dir, "upgrade-service", ".env"))
	r = w.run(w.restoreArgs(h, "latest", "--target", dir, "--force")...)
	if r.code != 0 {
		t.Fatalf("restore --force:\n%s", r)
	}
	t.Logf("restore --target --force:\n%s", r)
	aside, _ := filepath.Glob(filepath.Join(dir, "couchdb.before-restore-*"))
	if len(aside) != 1 || !strings.Contains(r.stdout, "moved aside") {
		t.Fatalf("--force must move the earlier couchdb/ aside: %v\n%s", aside, r)
	}
	sameState(t, "moved aside", before[tr.EnvFile], filepath.Join(dir, "upgrade-service", ".env.before-restore-"+strings.TrimPrefix(filepath.Base(aside[0]), "couchdb.before-restore-")))

	// An unknown archive and bad command lines are refused before anything is written.
	other := filepath.Join(w.dir, "other")
	r = w.run(w.restoreArgs(h, "no-such-archive", "--target", other)...)
	if r.code != 2 || !strings.Contains(r.stderr, "no-such-archive") || !strings.Contains(r.stderr, "cht-backup archives") {
		t.Fatalf("unknown archive:\n%s", r)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("an unknown archive created the target")
	}
	for _, args := range [][]string{{"--target", other}, {"a", "b", "--target", other}, {"latest"}, {"latest", "--target", other, "--in-place"}} {
		if r := w.run(w.restoreArgs(h, args...)...); r.code != 3 {
			t.Errorf("restore %v: want exit 3 (usage):\n%s", args, r)
		}
	}
}

// backup, then wipe and alter the CHT tree and the container files, then restore --in-place
// --yes: host and container files are as backed up, containers run, and the altered copies are
// kept aside and named.
func TestRestoreInPlaceBringsBackHostAndContainers(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)
	tr, cs := h.tree, h.containers

	// Disaster: database files lost, .env changed, a stray file and compose file added, the
	// certificate replaced, the credentials volume lost.
	os.Remove(tr.CouchFiles[0])
	os.Remove(tr.ViewFiles[0])
	stray := filepath.Join(tr.CouchDBData, "shards", tr.ShardRanges[0], "stray.1700000099.couch")
	os.WriteFile(stray, []byte("stray"), 0o644)
	alteredEnv := append(append([]byte{}, before[tr.EnvFile].body...), []byte("ALTERED=1\n")...)
	os.WriteFile(tr.EnvFile, alteredEnv, 0o600)
	extraYML := filepath.Join(tr.ComposePath, "extra.yml")
	os.WriteFile(extraYML, []byte("services: {}\n"), 0o644)
	copyIntoContainer(t, cs.Client, cs.Nginx.ID, sourcestest.NginxPrivateDir, map[string]string{"cert.pem": "not the certificate"}, false)
	couchID := recreateWithEmptyVolume(t, cs.Client, cs.CouchDB)

	// No terminal and no --yes: refused, nothing changed.
	r := w.run(w.restoreArgs(h, "latest", "--in-place")...)
	if r.code != 3 || !strings.Contains(r.stderr, "--yes") || !strings.Contains(r.stdout, "move aside") {
		t.Fatalf("in-place without --yes and without a terminal must show the plan and refuse:\n%s", r)
	}
	if got, _ := os.ReadFile(tr.EnvFile); !bytes.Equal(got, alteredEnv) {
		t.Fatal("a refused restore changed .env")
	}
	// Nothing was done, so nothing is recorded as a restore (and no fail ping goes out).
	if f, err := state.Load(w.stateDir); err == nil && f.Find(state.JobRestore, w.remoteRepo()) != nil {
		t.Fatalf("a refused restore was recorded: %+v", f.Find(state.JobRestore, w.remoteRepo()))
	}

	r = w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	if r.code != 0 {
		t.Fatalf("restore --in-place:\n%s", r)
	}
	t.Logf("restore --in-place:\n%s", r)
	noSecrets(t, h, r)
	for p, want := range before {
		sameState(t, "in place", want, p)
	}
	for _, p := range []string{stray, extraYML} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s should have been moved aside with the rest", p)
		}
	}
	checkContainerFiles(t, cs, cs.Nginx.ID, sourcestest.NginxPrivateDir)
	checkContainerFiles(t, cs, couchID, sourcestest.CouchDBLocalDDir)
	if !running(t, cs.Client, cs.Nginx.ID) || !running(t, cs.Client, couchID) {
		t.Errorf("containers not running after the restore:\n%s", r)
	}

	// The altered state is kept, and the output says where.
	asideData, _ := filepath.Glob(tr.CouchDBData + ".before-restore-*")
	asideEnv, _ := filepath.Glob(tr.EnvFile + ".before-restore-*")
	asideYML, _ := filepath.Glob(extraYML + ".before-restore-*")
	saved, _ := filepath.Glob(filepath.Join(tr.Root, "container-files.before-restore-*", "nginx", "cert.pem"))
	if len(asideData) != 1 || len(asideEnv) != 1 || len(asideYML) != 1 || len(saved) != 1 {
		t.Fatalf("moved-aside copies: data %v env %v yml %v cert %v\n%s", asideData, asideEnv, asideYML, saved, r)
	}
	rel, _ := filepath.Rel(tr.CouchDBData, stray)
	if b, err := os.ReadFile(filepath.Join(asideData[0], rel)); err != nil || string(b) != "stray" {
		t.Errorf("the stray file is not in the moved-aside data: %v", err)
	}
	rel, _ = filepath.Rel(tr.CouchDBData, tr.CouchFiles[0])
	if _, err := os.Stat(filepath.Join(asideData[0], rel)); !os.IsNotExist(err) {
		t.Errorf("the moved-aside data should lack the deleted file")
	}
	if b, _ := os.ReadFile(asideEnv[0]); !bytes.Equal(b, alteredEnv) {
		t.Errorf("the moved-aside .env lost its altered content")
	}
	if b, _ := os.ReadFile(saved[0]); string(b) != "not the certificate" {
		t.Errorf("the saved nginx files lost the altered certificate")
	}
	for _, p := range []string{asideData[0], asideEnv[0], asideYML[0], filepath.Dir(filepath.Dir(saved[0]))} {
		if !strings.Contains(r.stdout, p) {
			t.Errorf("output does not name %s:\n%s", p, r)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(tr.CouchDBData), ".cht-backup-restore-*")); len(left) > 0 {
		t.Errorf("scratch left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(w.stateDir, "restore", "*")); len(left) > 0 {
		t.Errorf("probe scratch left: %v", left)
	}
}

// A failure in the middle of an in-place restore (the TLS files cannot go back because the
// container now has a directory where the archive has cert.pem) stops there, keeps the
// moved-aside copies, and prints commands that bring the host back to where it was.
func TestRestoreInPlaceFailureSaysHowToGoBack(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.NamesV2)
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	tr, cs := h.tree, h.containers

	os.Remove(tr.CouchFiles[0])
	envBody, _ := os.ReadFile(tr.EnvFile)
	os.WriteFile(tr.EnvFile, append(envBody, "ALTERED=1\n"...), 0o600)
	altered := treeState(t, &sourcestest.Tree{EnvFile: tr.EnvFile, CouchDBData: tr.CouchDBData, ComposeFiles: tr.ComposeFiles, CouchFiles: tr.CouchFiles[1:], ViewFiles: tr.ViewFiles})
	copyIntoContainer(t, cs.Client, cs.Nginx.ID, sourcestest.NginxPrivateDir, map[string]string{"cert.pem/": "", "cert.pem/x": "x"}, true)

	r := w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	if r.code != 2 {
		t.Fatalf("want exit 2:\n%s", r)
	}
	t.Logf("failed restore --in-place:\n%s", r)
	noSecrets(t, h, r)
	for _, want := range []string{"FAILED", "state of this host now", "to go back", "mv ", "docker start"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
	if aside, _ := filepath.Glob(tr.CouchDBData + ".before-restore-*"); len(aside) != 1 {
		t.Fatalf("moved-aside data missing: %v", aside)
	}
	if running(t, cs.Client, cs.Nginx.ID) {
		t.Errorf("the restore stopped at a failure; the containers should still be stopped")
	}

	// The printed commands bring back exactly the state before the restore.
	var cmds []string
	for _, l := range strings.Split(r.stdout[strings.Index(r.stdout, "to go back"):], "\n")[1:] {
		if l = strings.TrimSpace(l); l != "" {
			cmds = append(cmds, l)
		}
	}
	for _, c := range cmds {
		if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
			t.Fatalf("recovery command %q: %v\n%s", c, err, out)
		}
	}
	for p, want := range altered {
		sameState(t, "after going back", want, p)
	}
	if !running(t, cs.Client, cs.Nginx.ID) || !running(t, cs.Client, cs.CouchDB.ID) {
		t.Errorf("containers not running after the recovery commands %q", cmds)
	}
}

// An archive whose files no longer match its manifest (re-made by hand with a changed .env) is
// refused before anything on the host changes: CHT keeps running, nothing is moved aside.
func TestRestoreInPlaceRefusesAnArchiveThatDiffersFromItsManifest(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	name := w.mustBackup(t, h)

	// Re-create the archive's content with one file changed, under a new name, with plain borg.
	x := plainExtract(t, w, w.remoteRepo(), name)
	env := filepath.Join(x, strings.TrimPrefix(h.tree.EnvFile, "/"))
	os.WriteFile(env, []byte("COUCHDB_PASSWORD=not-what-was-backed-up\n"), 0o600)
	entries, _ := os.ReadDir(x)
	args := []string{"borg", "create", w.remoteRepo() + "::" + name + "-tampered"}
	for _, e := range entries {
		args = append(args, e.Name())
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = x
	cmd.Env = append(append([]string{}, w.env...), "BORG_PASSPHRASE="+w.passphrase,
		"BORG_RSH=ssh -o BatchMode=yes -o UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"]+" -i "+testEnv["SSH_SHELL_KEY"])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("borg create: %v\n%s", err, out)
	}

	before := treeState(t, h.tree)
	r := w.run(w.restoreArgs(h, name+"-tampered", "--in-place", "--yes")...)
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "differs from its manifest") || !strings.Contains(r.stdout+r.stderr, "sha256") {
		t.Fatalf("a tampered archive must be refused with the reason:\n%s", r)
	}
	if after := treeState(t, h.tree); !reflect.DeepEqual(after, before) {
		t.Fatal("a refused restore changed the host")
	}
	if aside, _ := filepath.Glob(h.tree.EnvFile + ".before-restore-*"); len(aside) != 0 {
		t.Fatalf("something was moved aside: %v", aside)
	}
	for _, c := range []sourcestest.TestContainer{h.containers.Nginx, h.containers.CouchDB} {
		info, err := h.containers.Client.ContainerInspect(context.Background(), c.ID)
		if err != nil || !info.State.Running {
			t.Fatalf("container %s was stopped: %v", c.Name, err)
		}
	}
}
