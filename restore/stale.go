package restore

import (
	"path/filepath"

	"github.com/cht-backup/cht-backup/sources"
)

// RemoveStaleInPlaceScratch removes the copies of archives that in-place restores killed before
// they could clean up (SIGKILL, power loss) left next to this host's CouchDB data directory, as
// the live .env names it, and returns their paths. Such a copy holds health records and secrets,
// and takes as much space as the CouchDB data. A running restore's copy is told apart by its
// process, which is alive, and left alone.
func RemoveStaleInPlaceScratch(chtDir string) ([]string, error) {
	if chtDir == "" {
		return nil, nil
	}
	cht, err := filepath.Abs(chtDir)
	if err != nil {
		return nil, err
	}
	env, _ := sources.ParseEnvFile(filepath.Join(cht, "upgrade-service", ".env"))
	data := sources.ResolveHostPaths(cht, env).CouchDBData
	if real, err := filepath.EvalSymlinks(data); err == nil {
		data = real
	}
	return RemoveStaleScratch(filepath.Dir(data), scratchPrefix)
}
