package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// A file borg cannot read fails the archive (exit 2) whatever the borg series: borg 1.2 says so
// in a warning text, borg 1.4 with BORG_EXIT_CODES=modern with exit code 105 and the msgid
// BackupPermissionError. The run drops root's power to read any file (CAP_DAC_OVERRIDE), so a
// mode 0000 CouchDB file is unreadable as on a real disk with a bad permission.
func TestBackupUnreadableFileFailsWithEitherBorg(t *testing.T) {
	needEnv(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE: %v", err)
	}
	for _, series := range []string{"1.2", "1.4"} {
		t.Run("borg-"+series, func(t *testing.T) {
			client, err := borgSeriesPath(series)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorld(t)
			w.env = append(w.env, "CHT_BACKUP_BORG="+client)
			h := newCHTHost(t, w, sourcestest.LabelsOnly)
			w.mustInit(t, w.remoteRepo())
			bad := h.tree.CouchFiles[0]
			if err := os.Chmod(bad, 0); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("setpriv", append([]string{"--bounding-set=-dac_override,-dac_read_search", binPath}, w.backupArgs(h)...)...)
			cmd.Env = w.env
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err = cmd.Run()
			r := result{stdout: out.String(), stderr: errb.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				r.code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if r.code != 2 {
				t.Errorf("an unreadable file must fail the backup (exit 2):\n%s", r)
			}
			if !strings.Contains(r.stdout+r.stderr, strings.TrimPrefix(bad, "/")) || !strings.Contains(r.stdout+r.stderr, "Permission denied") {
				t.Errorf("the unreadable file is not named with its reason:\n%s", r)
			}
			t.Logf("borg %s:\n%s", series, r)
		})
	}
}
