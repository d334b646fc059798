package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cht-backup/cht-backup/systemd"
)

// installedUnitDir is where a run looks for the units `schedule install` wrote.
var installedUnitDir = defaultUnitDir

// unitPathsProblem checks, before a job starts, that the paths it will write are still covered
// by the installed unit of that job: a local repository or metrics file added to the config after
// `schedule install` is read-only for the scheduled run, and borg would fail on it with a lock
// error. Inside the unit (systemd started this process) such a path fails the run before borg
// starts; a manual run only warns, since the next scheduled run would fail.
func unitPathsProblem(o *options, job string) error {
	if o.settingsUnread {
		return nil
	}
	inUnit := systemd.InUnit()
	home, _ := os.UserHomeDir()
	if home == "" {
		home = "/root"
	}
	unit := "cht-backup-" + job + ".service"
	needed, err := writablePaths(o, home)
	if err != nil {
		var ue *userError
		if errors.As(err, &ue) && !inUnit {
			if _, serr := os.Stat(filepath.Join(installedUnitDir, unit)); serr == nil {
				o.Log.Warnf("the scheduled runs will fail: %v; %s", err, ue.hint)
			}
			return nil
		}
		return err
	}
	var missing []string
	installed, rerr := systemd.ReadWritePaths(filepath.Join(installedUnitDir, unit))
	for _, p := range needed {
		optional := strings.HasPrefix(p, "-")
		p = strings.TrimPrefix(p, "-")
		switch {
		case rerr == nil && !systemd.Covered(p, installed):
			missing = append(missing, p)
		case inUnit && !optional && systemd.ReadOnly(p), inUnit && optional && exists(p) && systemd.ReadOnly(p):
			missing = append(missing, p)
		}
	}
	if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		o.Log.Warnf("cannot read the installed unit %s: %v", unit, rerr)
	}
	if len(missing) == 0 {
		return nil
	}
	what := fmt.Sprintf("%s must write %s, which the installed %s does not allow (ReadWritePaths= in %s): the units were installed before that path was configured",
		job, strings.Join(missing, ", "), unit, installedUnitDir)
	const hint = "run `cht-backup schedule install` again (with the same --config), so the units cover every path in the config"
	if !inUnit {
		o.Log.Warnf("the scheduled runs will fail: %s; %s", what, hint)
		return nil
	}
	return &userError{err: errors.New(what), hint: hint, code: exitUsage}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
