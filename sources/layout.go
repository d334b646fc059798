package sources

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// DefaultCHTDir is where the CHT hosting docs install CHT.
const DefaultCHTDir = "/home/ubuntu/cht"

// Names of the .env keys this package reads, and what applies when a key is
// absent or empty (the CHT installation docs' values).
const (
	EnvCouchDBData     = "COUCHDB_DATA"             // default <cht>/couchdb
	EnvComposePath     = "CHT_COMPOSE_PATH"         // default <cht>/compose
	EnvProjectName     = "CHT_COMPOSE_PROJECT_NAME" // default "cht"
	DefaultProjectName = "cht"
)

// Layout is where a CHT host keeps what a backup needs. All paths are absolute.
type Layout struct {
	CHTDir       string   // --cht-dir
	EnvFile      string   // <cht>/upgrade-service/.env
	CouchDBData  string   // COUCHDB_DATA, the CouchDB data bind mount
	ComposePath  string   // CHT_COMPOSE_PATH, where cht-core.yml and cht-couchdb.yml live
	ProjectName  string   // CHT_COMPOSE_PROJECT_NAME, the compose project of the CHT containers
	ComposeFiles []string // <ComposePath>/*.yml and <cht>/upgrade-service/*.yml, sorted, no duplicates
	// EnvKeys are the names (never the values) set in the .env file, sorted: Gather warns when
	// COUCHDB_SECRET or COUCHDB_UUID is missing (then only the credentials volume holds them), and
	// the manifest records them.
	EnvKeys []string
}

// UpgradeServiceDir is the directory of the upgrade service's compose file and .env.
func (l *Layout) UpgradeServiceDir() string { return filepath.Join(l.CHTDir, "upgrade-service") }

// Discover resolves the layout of the CHT installation in chtDir ("" means
// DefaultCHTDir) from its upgrade-service/.env. Relative paths in .env are
// resolved against upgrade-service/, as docker compose resolves them against
// the directory of the env file's project. It fails when .env is missing or
// when COUCHDB_DATA is not a readable directory.
func Discover(chtDir string) (*Layout, error) {
	if chtDir == "" {
		chtDir = DefaultCHTDir
	}
	abs, err := filepath.Abs(chtDir)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve CHT directory %q: %w", chtDir, err)
	}
	l := &Layout{CHTDir: filepath.Clean(abs)}
	us := l.UpgradeServiceDir()
	l.EnvFile = filepath.Join(us, ".env")

	if fi, err := os.Stat(l.EnvFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("CHT env file %s not found: it is the upgrade service's .env that sets COUCHDB_DATA and the CouchDB credentials; point --cht-dir at the CHT directory (now %s)", l.EnvFile, l.CHTDir)
		}
		return nil, fmt.Errorf("cannot read CHT env file %s: %v; check its permissions (run as root)", l.EnvFile, unwrapPathError(err))
	} else if fi.IsDir() {
		return nil, fmt.Errorf("CHT env file %s is a directory, not the upgrade service's .env; check --cht-dir (now %s)", l.EnvFile, l.CHTDir)
	}
	env, err := ParseEnvFile(l.EnvFile)
	if err != nil {
		return nil, err
	}
	for k := range env {
		l.EnvKeys = append(l.EnvKeys, k)
	}
	sort.Strings(l.EnvKeys)

	h := ResolveHostPaths(l.CHTDir, env)
	l.CouchDBData, l.ComposePath, l.ProjectName = h.CouchDBData, h.ComposePath, h.Project

	if err := checkReadableDir(l.CouchDBData); err != nil {
		return nil, fmt.Errorf("CouchDB data directory %s (COUCHDB_DATA in %s) %v", l.CouchDBData, l.EnvFile, err)
	}

	seen := map[string]bool{}
	for _, dir := range []string{l.ComposePath, us} {
		matches, err := filepath.Glob(filepath.Join(dir, "*.yml"))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() && !seen[m] {
				seen[m] = true
				l.ComposeFiles = append(l.ComposeFiles, m)
			}
		}
	}
	sort.Strings(l.ComposeFiles)
	return l, nil
}

// checkReadableDir says, as the end of a sentence, why dir cannot be listed.
func checkReadableDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("does not exist; set COUCHDB_DATA to the directory CouchDB's container mounts at /opt/couchdb/data")
	case errors.Is(err, syscall.ELOOP):
		return errors.New("is a symlink loop (a link that leads back to itself); point COUCHDB_DATA at the real directory, or fix the link with `ls -l` and `readlink -f`")
	case err != nil:
		return fmt.Errorf("cannot be read: %v; check its permissions and run as root", unwrapPathError(err))
	case !fi.IsDir():
		return errors.New("is not a directory; set COUCHDB_DATA to the directory CouchDB's container mounts at /opt/couchdb/data")
	}
	f, err := os.Open(dir)
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("cannot be read: %v; check its permissions and run as root", unwrapPathError(err))
	}
	return nil
}

// HostPaths are where a CHT host keeps its files, resolved from its .env: relative values
// against <cht>/upgrade-service/ (as docker compose resolves them), empty ones take the defaults.
type HostPaths struct {
	CHTDir      string `json:"cht_dir"`
	EnvFile     string `json:"env_file"`
	CouchDBData string `json:"couchdb_data"`
	ComposePath string `json:"compose_path"`
	Project     string `json:"compose_project"`
}

// ResolveHostPaths applies env (the parsed .env; nil means none) to the CHT directory chtDir.
func ResolveHostPaths(chtDir string, env map[string]string) HostPaths {
	chtDir = filepath.Clean(chtDir)
	us := filepath.Join(chtDir, "upgrade-service")
	resolve := func(key, def string) string {
		v := env[key]
		if v == "" {
			return def
		}
		if !filepath.IsAbs(v) {
			v = filepath.Join(us, v)
		}
		return filepath.Clean(v)
	}
	h := HostPaths{
		CHTDir:      chtDir,
		EnvFile:     filepath.Join(us, ".env"),
		CouchDBData: resolve(EnvCouchDBData, filepath.Join(chtDir, "couchdb")),
		ComposePath: resolve(EnvComposePath, filepath.Join(chtDir, "compose")),
		Project:     env[EnvProjectName],
	}
	if h.Project == "" {
		h.Project = DefaultProjectName
	}
	return h
}

// HumanBytes formats a size the way du -h does, in binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
