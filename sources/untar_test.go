package sources

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type entry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: mtime}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

func TestUntarKeepsFilesDirsSymlinksAndModes(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "private")
	t.Cleanup(func() { os.Chmod(filepath.Join(dest, "sub"), 0o700) })
	err := untar(tarOf(t,
		entry{name: "private/", typ: tar.TypeDir, mode: 0o750},
		entry{name: "private/key.pem", typ: tar.TypeReg, mode: 0o600, body: "KEY"},
		entry{name: "private/cert.pem", typ: tar.TypeReg, mode: 0o644, body: "CERT"},
		entry{name: "private/sub/", typ: tar.TypeDir, mode: 0o500},
		entry{name: "private/sub/deploy.sh", typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh"},
		entry{name: "private/fullchain.pem", typ: tar.TypeSymlink, link: "cert.pem"},
		entry{name: "private/outside", typ: tar.TypeSymlink, link: "/etc/shadow"},
		entry{name: "private/hard.pem", typ: tar.TypeLink, link: "private/cert.pem"},
	), dest, "private")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]os.FileMode{"": 0o750 | os.ModeDir, "key.pem": 0o600, "cert.pem": 0o644, "sub": 0o500 | os.ModeDir, "sub/deploy.sh": 0o755}
	for name, mode := range checks {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
		if !fi.ModTime().Equal(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)) {
			t.Errorf("%s: mtime %v not kept", name, fi.ModTime())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "key.pem")); string(b) != "KEY" {
		t.Errorf("key.pem holds %q", b)
	}
	// Symlinks are kept as links, wherever they point, and never followed.
	for name, want := range map[string]string{"fullchain.pem": "cert.pem", "outside": "/etc/shadow"} {
		if got, err := os.Readlink(filepath.Join(dest, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "hard.pem")); string(b) != "CERT" {
		t.Errorf("hard.pem holds %q", b)
	}
}

func TestUntarRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dot-dot", []entry{{name: "private/", typ: tar.TypeDir, mode: 0o755}, {name: "private/../../evil", typ: tar.TypeReg, body: "x"}}, "leaving"},
		{"absolute", []entry{{name: "/etc/evil", typ: tar.TypeReg, body: "x"}}, "absolute"},
		{"outside top", []entry{{name: "other/evil", typ: tar.TypeReg, body: "x"}}, "outside"},
		{"through symlink", []entry{
			{name: "private/", typ: tar.TypeDir, mode: 0o755},
			{name: "private/link", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "private/link/evil", typ: tar.TypeReg, body: "x"},
		}, "through symlink"},
		{"dir through symlink", []entry{
			{name: "private/", typ: tar.TypeDir, mode: 0o755},
			{name: "private/link", typ: tar.TypeSymlink, link: ".."},
			{name: "private/link/d/", typ: tar.TypeDir, mode: 0o755},
		}, "through symlink"},
		{"overwrite symlink with file", []entry{
			{name: "private/", typ: tar.TypeDir, mode: 0o755},
			{name: "private/link", typ: tar.TypeSymlink, link: "/tmp/sourcestest-evil"},
			{name: "private/link", typ: tar.TypeReg, body: "x"},
		}, "exists"},
		{"hard link outside", []entry{
			{name: "private/", typ: tar.TypeDir, mode: 0o755},
			{name: "private/h", typ: tar.TypeLink, link: "../etc/passwd"},
		}, "leaving"},
		{"device", []entry{{name: "private/", typ: tar.TypeDir, mode: 0o755}, {name: "private/dev", typ: tar.TypeChar}}, "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "out", "private")
			os.MkdirAll(filepath.Dir(dest), 0o700)
			// A link to /tmp is made to point at this test's own directory, so an escape lands
			// where no other run (a mutant of untar, say) can have left a file.
			entries := append([]entry(nil), tt.entries...)
			for i := range entries {
				if entries[i].link == "/tmp" {
					entries[i].link = base
				}
			}
			err := untar(tarOf(t, entries...), dest, "private")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an error with %q, got %v", tt.want, err)
			}
			for _, p := range []string{filepath.Join(base, "evil"), filepath.Join(base, "out", "evil"), "/tmp/evil", "/tmp/sourcestest-evil", "/etc/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}
