// Package sourcestest builds a throwaway CHT host for tests and demos: a CHT
// directory tree (upgrade-service/.env, compose files, a CouchDB data
// directory with shards and view indexes) and, with Docker, nginx and
// couchdb containers holding a TLS certificate, key and
// cluster-credentials.ini. It is used by the sources tests, the CLI's
// end-to-end tests and the restore tests.
package sourcestest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// CouchDBUID is the uid (and gid) CouchDB's image runs as; CHT data files
// belong to it.
const CouchDBUID = 5984

// Options shape a tree. The zero value gives a CHT 4.x host with two shard
// ranges, the medic, medic-sentinel and _users databases and 16 KiB files.
type Options struct {
	Project     string   // CHT_COMPOSE_PROJECT_NAME; "" means "cht"
	CHTVersion  string   // tag of the cht-* images in compose files; "" means "4.21.0"
	ShardRanges []string // "" means 00000000-7fffffff and 80000000-ffffffff
	Databases   []string // nil means medic, medic-sentinel, _users
	FileSize    int      // random (incompressible) bytes per CouchDB file; 0 means 16 KiB
	// CouchDBData and ComposePath are written to .env as they are (relative
	// values are relative to upgrade-service/); "" means the absolute
	// defaults <root>/couchdb and <root>/compose.
	CouchDBData string
	ComposePath string
	// MinimalEnv leaves COUCHDB_DATA, CHT_COMPOSE_PATH and
	// CHT_COMPOSE_PROJECT_NAME out of .env, so their defaults apply.
	MinimalEnv bool
	// NoSecretAndUUID leaves COUCHDB_SECRET and COUCHDB_UUID out of .env, as
	// on installs where only cluster-credentials.ini holds them.
	NoSecretAndUUID bool
	Nouveau         bool // add nouveau/ to the data directory, as CHT 5.x has
	NoChown         bool // keep CouchDB files owned by the caller instead of uid 5984 (when root)
	// EmptyCouchDB leaves the data directory empty, for a real CouchDB to fill.
	EmptyCouchDB bool
}

// Option changes Options for NewTree.
type Option func(*Options)

// Tree is a CHT directory written by WriteTree. All paths are absolute.
type Tree struct {
	Root         string // the CHT directory (--cht-dir)
	EnvFile      string
	CouchDBData  string
	ComposePath  string
	Project      string
	CHTVersion   string
	ComposeFiles []string // sorted
	ShardRanges  []string
	Databases    []string
	CouchFiles   []string // every file in the data directory except view indexes, sorted
	ViewFiles    []string // view index files under .shards/, sorted
	// Env is what .env sets; Password, Secret and UUID are distinctive values
	// tests grep for to prove they never leak.
	Env      map[string]string
	Password string
	Secret   string
	UUID     string
	opts     Options
}

// SecretValues are the .env values that must never appear in output, logs,
// errors or manifests.
func (t *Tree) SecretValues() []string {
	var s []string
	for _, v := range []string{t.Password, t.Secret, t.UUID} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}

// NewTree writes a CHT-like tree at root (created if missing) and fails the
// test on error.
func NewTree(t testing.TB, root string, opts ...Option) *Tree {
	t.Helper()
	var o Options
	for _, f := range opts {
		f(&o)
	}
	tree, err := WriteTree(root, o)
	if err != nil {
		t.Fatalf("sourcestest: writing CHT tree: %v", err)
	}
	return tree
}

// WriteTree writes a CHT-like tree at root (created if missing): for tests
// (see NewTree) and for demos.
func WriteTree(root string, o Options) (*Tree, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if o.Project == "" {
		o.Project = "cht"
	}
	if o.CHTVersion == "" {
		o.CHTVersion = "4.21.0"
	}
	if len(o.ShardRanges) == 0 {
		o.ShardRanges = []string{"00000000-7fffffff", "80000000-ffffffff"}
	}
	if o.Databases == nil {
		o.Databases = []string{"medic", "medic-sentinel", "_users"}
	}
	if o.FileSize == 0 {
		o.FileSize = 16 << 10
	}
	t := &Tree{Root: root, Project: o.Project, CHTVersion: o.CHTVersion, ShardRanges: o.ShardRanges, Databases: o.Databases, opts: o}
	us := filepath.Join(root, "upgrade-service")
	resolve := func(v, def string) string {
		if v == "" {
			return def
		}
		if filepath.IsAbs(v) {
			return filepath.Clean(v)
		}
		return filepath.Join(us, v)
	}
	t.CouchDBData = resolve(o.CouchDBData, filepath.Join(root, "couchdb"))
	t.ComposePath = resolve(o.ComposePath, filepath.Join(root, "compose"))
	t.EnvFile = filepath.Join(us, ".env")
	for _, d := range []string{us, t.ComposePath, t.CouchDBData, filepath.Join(root, "certs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	t.Password = "sourcestest-pw-" + randHex(10)
	t.Secret = "sourcestest-secret-" + randHex(10)
	t.UUID = randHex(16)
	t.Env = map[string]string{
		"COUCHDB_USER":       "medic",
		"COUCHDB_PASSWORD":   t.Password,
		"DOCKER_CONFIG_PATH": us,
	}
	var env strings.Builder
	env.WriteString("# CHT upgrade service environment, written by sourcestest\n\n")
	if !o.MinimalEnv {
		dataVal, composeVal := o.CouchDBData, o.ComposePath
		if dataVal == "" {
			dataVal = t.CouchDBData
		}
		if composeVal == "" {
			composeVal = t.ComposePath
		}
		t.Env["CHT_COMPOSE_PROJECT_NAME"] = o.Project
		t.Env["COUCHDB_DATA"] = dataVal
		t.Env["CHT_COMPOSE_PATH"] = composeVal
		fmt.Fprintf(&env, "CHT_COMPOSE_PROJECT_NAME=%s\n", o.Project)
		fmt.Fprintf(&env, "export COUCHDB_DATA=%s\n", dataVal)
		fmt.Fprintf(&env, "CHT_COMPOSE_PATH=\"%s\"   # where cht-core.yml lives\n", composeVal)
	}
	fmt.Fprintf(&env, "DOCKER_CONFIG_PATH=%s\n", us)
	env.WriteString("COUCHDB_USER=medic\n")
	fmt.Fprintf(&env, "COUCHDB_PASSWORD='%s'\n", t.Password)
	if !o.NoSecretAndUUID {
		t.Env["COUCHDB_SECRET"] = t.Secret
		t.Env["COUCHDB_UUID"] = t.UUID
		fmt.Fprintf(&env, "COUCHDB_SECRET=%s # keep across restores\n", t.Secret)
		fmt.Fprintf(&env, "COUCHDB_UUID=\"%s\"\n", t.UUID)
	} else {
		t.Secret, t.UUID = "", ""
	}
	if err := writeFile(t.EnvFile, []byte(env.String()), 0o600); err != nil {
		return nil, err
	}

	files := map[string]string{
		filepath.Join(t.ComposePath, "cht-core.yml"):    coreYML,
		filepath.Join(t.ComposePath, "cht-couchdb.yml"): couchYML,
		filepath.Join(us, "docker-compose.yml"):         upgradeYML,
	}
	for p, body := range files {
		body = strings.ReplaceAll(body, "VERSION", o.CHTVersion)
		if err := writeFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
		t.ComposeFiles = append(t.ComposeFiles, p)
	}
	sort.Strings(t.ComposeFiles)

	if err := t.writeCouchDB(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tree) writeCouchDB() error {
	o, data := t.opts, t.CouchDBData
	if o.EmptyCouchDB {
		return nil
	}
	var dirs []string
	mkdir := func(p string) error {
		dirs = append(dirs, p)
		return os.MkdirAll(p, 0o755)
	}
	add := func(list *[]string, p string) error {
		if err := mkdir(filepath.Dir(p)); err != nil {
			return err
		}
		if err := writeRandom(p, o.FileSize); err != nil {
			return err
		}
		*list = append(*list, p)
		return nil
	}
	if err := mkdir(filepath.Join(data, ".delete")); err != nil {
		return err
	}
	for _, sys := range []string{"_dbs.couch", "_nodes.couch"} {
		if err := add(&t.CouchFiles, filepath.Join(data, sys)); err != nil {
			return err
		}
	}
	for i, db := range o.Databases {
		suffix := fmt.Sprint(1700000000 + i)
		for _, r := range o.ShardRanges {
			if err := add(&t.CouchFiles, filepath.Join(data, "shards", r, db+"."+suffix+".couch")); err != nil {
				return err
			}
			if db == "medic" {
				view := filepath.Join(data, ".shards", r, db+"."+suffix+"_design", "mrview", "3e8a1d0c5a0f1b2e4c6d8f0a1b2c3d4e.view")
				if err := add(&t.ViewFiles, view); err != nil {
					return err
				}
			}
		}
	}
	if o.Nouveau {
		if err := add(&t.CouchFiles, filepath.Join(data, "nouveau", "medic", "index.bin")); err != nil {
			return err
		}
	}
	sort.Strings(t.CouchFiles)
	sort.Strings(t.ViewFiles)
	if o.NoChown || os.Geteuid() != 0 {
		return nil
	}
	for _, p := range append(append(append(dirs, data), t.CouchFiles...), t.ViewFiles...) {
		if err := os.Chown(p, CouchDBUID, CouchDBUID); err != nil {
			return err
		}
	}
	return nil
}

// GrowCouchFiles appends n random bytes to every .couch file, as
// CouchDB's append-only files grow between two backups.
func (t *Tree) GrowCouchFiles(n int) error {
	for _, p := range t.CouchFiles {
		if !strings.HasSuffix(p, ".couch") {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, rand.Reader, int64(n))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

func writeRandom(p string, n int) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, rand.Reader, int64(n))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

const coreYML = `# cht-core.yml as the CHT release builds write it (trimmed)
services:
  haproxy:
    image: public.ecr.aws/medic/cht-haproxy:VERSION
    restart: always
  api:
    image: public.ecr.aws/medic/cht-api:VERSION
    restart: always
    depends_on:
      - haproxy
  sentinel:
    image: public.ecr.aws/medic/cht-sentinel:VERSION
    restart: always
  nginx:
    image: public.ecr.aws/medic/cht-nginx:VERSION
    restart: always
    ports:
      - "${NGINX_HTTP_PORT:-80}:80"
      - "${NGINX_HTTPS_PORT:-443}:443"
    volumes:
      - cht-ssl:${SSL_VOLUME_MOUNT_PATH:-/etc/nginx/private/}
volumes:
  cht-ssl:
`

const couchYML = `# cht-couchdb.yml, single node (trimmed)
services:
  couchdb:
    image: public.ecr.aws/medic/cht-couchdb:VERSION
    restart: always
    environment:
      - "COUCHDB_USER=${COUCHDB_USER:-admin}"
      - "COUCHDB_PASSWORD=${COUCHDB_PASSWORD}"
      - "COUCHDB_SECRET=${COUCHDB_SECRET}"
      - "COUCHDB_UUID=${COUCHDB_UUID}"
    volumes:
      - ${COUCHDB_DATA:-./srv}:/opt/couchdb/data
      - cht-credentials:/opt/couchdb/etc/local.d/
volumes:
  cht-credentials:
`

const upgradeYML = `# upgrade-service/docker-compose.yml (trimmed)
services:
  cht-upgrade-service:
    image: public.ecr.aws/medic/cht-upgrade-service:latest
    restart: always
    volumes:
      - ${DOCKER_HOST:-/var/run/docker.sock}:/var/run/docker.sock
      - ${DOCKER_CONFIG_PATH}:/config
      - ${CHT_COMPOSE_PATH}:/docker-compose
`
