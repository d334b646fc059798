package systemd

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

func TestReadWritePaths(t *testing.T) {
	unit := filepath.Join(t.TempDir(), "x.service")
	os.WriteFile(unit, []byte(`[Unit]
ReadWritePaths=/not/service
[Service]
ReadWritePaths=/var/lib/$$state -/root/.cache/borg "-/mnt/usb disk/cht" +/srv/100%%
# ReadWritePaths=/commented
ReadWritePaths=-/var/lib/node_exporter/
`), 0o644)
	got, err := ReadWritePaths(unit)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/var/lib/$state", "/root/.cache/borg", "/mnt/usb disk/cht", "/srv/100%", "/var/lib/node_exporter"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for p, want := range map[string]bool{"/mnt/usb disk/cht/data": true, "/mnt/usb disk": false, "/var/lib/$state": true, "/var/lib/node_exporter2": false} {
		if Covered(p, got) != want {
			t.Errorf("Covered(%q) = %v", p, !want)
		}
	}
}

func TestJournalStreamMatchesOnlyItsStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !JournalStream(f) {
		t.Error("the stream JOURNAL_STREAM names is not recognised")
	}
	other, _ := os.CreateTemp(t.TempDir(), "other")
	defer other.Close()
	if JournalStream(other) {
		t.Error("another file (output redirected) counts as the journal")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if JournalStream(f) {
		t.Error("journal without JOURNAL_STREAM")
	}
}

// A read-only bind mount stands for a path outside a unit's ReadWritePaths=.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	if ReadOnly(filepath.Join(dir, "not", "yet")) {
		t.Error("a writable temp dir reads as read-only")
	}
	if os.Geteuid() != 0 {
		t.Skip("a read-only bind mount needs root")
	}
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o700)
	if err := syscall.Mount(ro, ro, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ro, 0) })
	if err := syscall.Mount("", ro, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("read-only remount: %v", err)
	}
	if !ReadOnly(ro) || !ReadOnly(filepath.Join(ro, "repo", "not-yet")) {
		t.Error("a read-only mount (or a path not yet made under it) reads as writable")
	}
}
