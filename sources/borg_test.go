//go:build !mutation

package sources

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// TestPathsArchiveAsManifestSays runs the real borg the way the backup
// command will (working directory WorkDir, path arguments Paths) and checks
// the archive against the manifest: every hashed archive path is there,
// .shards comes first, staging lands under cht-backup/ only.
func TestPathsArchiveAsManifestSays(t *testing.T) {
	borg, err := exec.LookPath("borg")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("borg is not installed; scripts/test-env.sh installs it (scripts/test.sh runs it first)")
		}
		t.Skip("SKIPPED: borg is not installed; run `bash scripts/test-env.sh` to install it")
	}
	ctx := context.Background()
	cs := sourcestest.StartContainers(t, ctx, "", sourcestest.NamesV1)
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project = cs.Project })
	o := gatherOpts(tree, t.TempDir())
	o.Docker = cs.Client
	g, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	repo := filepath.Join(t.TempDir(), "repo")
	env := append(os.Environ(), "BORG_BASE_DIR="+t.TempDir(), "BORG_PASSPHRASE=test-passphrase")
	run := func(dir string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(borg, args...)
		cmd.Dir, cmd.Env = dir, env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("borg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	run("", "init", "--encryption=repokey-blake2", repo)
	run(g.WorkDir, append([]string{"create", repo + "::a"}, g.Paths...)...)
	out := run("", "list", "--json-lines", repo+"::a")

	var order []string
	have := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var item struct{ Path string }
		if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
			t.Fatal(err)
		}
		order = append(order, item.Path)
		have[item.Path] = true
	}
	shards := g.Manifest.ArchivePaths[0]
	if !strings.HasSuffix(shards, "/.shards") || order[0] != shards {
		t.Errorf("archive starts with %q, want %q", order[0], shards)
	}
	seenShards := false
	for _, p := range order {
		if strings.HasPrefix(p, strings.TrimSuffix(shards, ".shards")+"shards/") {
			seenShards = true
		}
		if strings.HasPrefix(p, shards) && seenShards {
			t.Errorf("view index %s archived after database files", p)
		}
		if strings.Contains(p, "staging") {
			t.Errorf("staging path %s leaked into the archive", p)
		}
	}
	for k := range g.Manifest.SHA256 {
		if !have[k] {
			t.Errorf("manifest key %s is not an archive path", k)
		}
	}
	for _, p := range append(g.Manifest.ArchivePaths, StagingName+"/"+ManifestName) {
		if !have[p] {
			t.Errorf("%s missing from the archive", p)
		}
	}
	if len(order) != len(have) {
		t.Errorf("archive holds %d items but %d distinct paths: something was archived twice", len(order), len(have))
	}
}
