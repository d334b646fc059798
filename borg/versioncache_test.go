package borg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBorg writes an executable that prints "borg <version>" and appends a line to calls on every run.
func fakeBorg(t *testing.T, path, version, calls string) {
	t.Helper()
	script := "#!/bin/sh\necho run >> '" + calls + "'\necho 'borg " + version + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func countCalls(t *testing.T, calls string) int {
	b, err := os.ReadFile(calls)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func TestVersionCacheKeying(t *testing.T) {
	cases := []struct {
		name    string
		between func(t *testing.T, bin, calls, cache string) // runs between the first and second detection
		want    string                                       // version the second detection gives
		runs    int                                          // borg --version runs in all
	}{
		{"unchanged binary: borg asked once", func(*testing.T, string, string, string) {}, "1.2.4", 1},
		{"new mtime: asked again", func(t *testing.T, bin, _, _ string) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(bin, later, later); err != nil {
				t.Fatal(err)
			}
		}, "1.2.4", 2},
		{"upgraded in place (same size, new content): asked again", func(t *testing.T, bin, calls, _ string) {
			fakeBorg(t, bin, "1.2.8", calls)
			old := time.Unix(1_600_000_000, 0)
			if err := os.Chtimes(bin, old, old); err != nil { // even with an old mtime, the ctime moved
				t.Fatal(err)
			}
		}, "1.2.8", 2},
		{"replaced by a new file (new inode): asked again", func(t *testing.T, bin, calls, _ string) {
			tmp := bin + ".new"
			fakeBorg(t, tmp, "1.4.0", calls)
			if err := os.Rename(tmp, bin); err != nil {
				t.Fatal(err)
			}
		}, "1.4.0", 2},
		{"damaged cache file: asked again", func(t *testing.T, _, _, cache string) {
			if err := os.WriteFile(cache, []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "1.2.4", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin, calls, cache := filepath.Join(dir, "borg"), filepath.Join(dir, "calls"), filepath.Join(dir, "state", "borg-version.json")
			if err := os.Mkdir(filepath.Dir(cache), 0o711); err != nil {
				t.Fatal(err)
			}
			fakeBorg(t, bin, "1.2.4", calls)
			r := NewRunner(Credentials{}, nil)
			r.Binary = bin
			if v, err := r.DetectVersionCached(context.Background(), cache); err != nil || v.String() != "1.2.4" {
				t.Fatalf("first detection: %v, %v", v, err)
			}
			c.between(t, bin, calls, cache)
			r2 := NewRunner(Credentials{}, nil)
			r2.Binary = bin
			v, err := r2.DetectVersionCached(context.Background(), cache)
			if err != nil || v.String() != c.want || r2.Version != v {
				t.Fatalf("second detection: %v (runner %v), %v; want %s", v, r2.Version, err, c.want)
			}
			if n := countCalls(t, calls); n != c.runs {
				t.Fatalf("borg --version ran %d times, want %d", n, c.runs)
			}
		})
	}
}

// The key follows a symlink to the binary it names, so pointing the link elsewhere is a new key.
func TestVersionCacheFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	a, b, link := filepath.Join(dir, "borg-a"), filepath.Join(dir, "borg-b"), filepath.Join(dir, "borg")
	fakeBorg(t, a, "1.2.4", calls)
	fakeBorg(t, b, "1.4.1", calls)
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache.json")
	r := NewRunner(Credentials{}, nil)
	r.Binary = link
	if v, err := r.DetectVersionCached(context.Background(), cache); err != nil || v.String() != "1.2.4" {
		t.Fatalf("%v %v", v, err)
	}
	os.Remove(link)
	if err := os.Symlink(b, link); err != nil {
		t.Fatal(err)
	}
	if v, err := r.DetectVersionCached(context.Background(), cache); err != nil || v.String() != "1.4.1" {
		t.Fatalf("after retargeting the link: %v %v", v, err)
	}
}

// A cache file in a missing directory is never created (the state dir has its own mode rules),
// and the version is still detected.
func TestVersionCacheMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	bin, calls := filepath.Join(dir, "borg"), filepath.Join(dir, "calls")
	fakeBorg(t, bin, "1.2.4", calls)
	cache := filepath.Join(dir, "no-such-state-dir", "borg-version.json")
	r := NewRunner(Credentials{}, nil)
	r.Binary = bin
	for i := 0; i < 2; i++ {
		if v, err := r.DetectVersionCached(context.Background(), cache); err != nil || v.String() != "1.2.4" {
			t.Fatalf("%v %v", v, err)
		}
	}
	if _, err := os.Stat(filepath.Dir(cache)); !os.IsNotExist(err) {
		t.Fatalf("the cache created %s: %v", filepath.Dir(cache), err)
	}
	if n := countCalls(t, calls); n != 2 {
		t.Fatalf("borg --version ran %d times without a cache, want 2", n)
	}
}
