package restore

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cht-backup/cht-backup/sources"
)

// Placement is one piece of an archive and where a restore puts it.
type Placement struct {
	Group string `json:"group"`        // a sources group name, or "manifest"
	From  string `json:"archive_path"` // archive path of a directory or file
	To    string `json:"path"`         // where it goes on this host
}

// ContainerPart is a directory that lives in a container (TLS files, CouchDB credentials).
type ContainerPart struct {
	Group   string `json:"group"`
	Service string `json:"service"`      // compose service: nginx or couchdb
	Dir     string `json:"dir"`          // the directory in the container, e.g. /etc/nginx/private/
	From    string `json:"archive_path"` // where the archive keeps it
}

// GroupManifest names the placement of the manifest itself.
const GroupManifest = "manifest"

// archivePath is a host path as borg stores it: without its leading "/".
func archivePath(hostPath string) string {
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(hostPath)), "/")
}

// groupRoot is a group's root archive path, or "" when the archive lacks the group.
func groupRoot(m *sources.Manifest, name string) string {
	if g := m.Group(name); g != nil {
		return g.Root
	}
	return ""
}

// couchDBRoot is the archive path of the CouchDB data directory.
func couchDBRoot(m *sources.Manifest) string {
	if r := groupRoot(m, sources.GroupCouchDB); r != "" {
		return r
	}
	return archivePath(m.Sources.CouchDBData)
}

func envRoot(m *sources.Manifest) string {
	if r := groupRoot(m, sources.GroupEnv); r != "" {
		return r
	}
	return archivePath(m.Sources.EnvFile)
}

// containerParts are the container directories the archive holds, derived from where backup
// staged them: cht-backup/containers/<service>/<dir in the container>.
func containerParts(m *sources.Manifest) []ContainerPart {
	var parts []ContainerPart
	for _, name := range []string{sources.GroupTLS, sources.GroupCredentials} {
		root := groupRoot(m, name)
		rest, ok := strings.CutPrefix(root, sources.StagingName+"/containers/")
		if !ok {
			continue
		}
		service, dir, ok := strings.Cut(rest, "/")
		if !ok || dir == "" {
			continue
		}
		parts = append(parts, ContainerPart{Group: name, Service: service, Dir: "/" + strings.TrimSuffix(dir, "/") + "/", From: root})
	}
	return parts
}

// isUpgradeServiceFile says whether a compose file of the archive sat next to .env.
func isUpgradeServiceFile(m *sources.Manifest, f string) bool {
	return filepath.Dir(filepath.Clean(f)) == filepath.Dir(filepath.Clean(m.Sources.EnvFile))
}

// TargetLayout says where each part of the archive goes under dir (see the package doc).
func TargetLayout(m *sources.Manifest, dir string) []Placement {
	ps := []Placement{{Group: GroupManifest, From: ManifestPath, To: filepath.Join(dir, "manifest.json")}}
	ps = append(ps, Placement{Group: sources.GroupCouchDB, From: couchDBRoot(m), To: filepath.Join(dir, "couchdb")})
	ps = append(ps, Placement{Group: sources.GroupEnv, From: envRoot(m), To: filepath.Join(dir, "upgrade-service", ".env")})
	for _, f := range m.Sources.ComposeFiles {
		sub := "compose"
		if isUpgradeServiceFile(m, f) {
			sub = "upgrade-service"
		}
		ps = append(ps, Placement{Group: sources.GroupCompose, From: m.ResolvedCopy(archivePath(f)), To: filepath.Join(dir, sub, filepath.Base(f))})
	}
	for _, cp := range containerParts(m) {
		name := cp.Group // tls, credentials
		ps = append(ps, Placement{Group: cp.Group, From: cp.From, To: filepath.Join(dir, name)})
	}
	return ps
}

// InPlaceLayout says where each host part of the archive goes on this host, given the paths the
// restored .env resolves to (see the package doc). The manifest and the container parts are not
// placed on the host.
func InPlaceLayout(m *sources.Manifest, h sources.HostPaths) []Placement {
	ps := []Placement{
		{Group: sources.GroupCouchDB, From: couchDBRoot(m), To: h.CouchDBData},
		{Group: sources.GroupEnv, From: envRoot(m), To: h.EnvFile},
	}
	for _, f := range m.Sources.ComposeFiles {
		dir := h.ComposePath
		if isUpgradeServiceFile(m, f) {
			dir = filepath.Dir(h.EnvFile)
		}
		ps = append(ps, Placement{Group: sources.GroupCompose, From: m.ResolvedCopy(archivePath(f)), To: filepath.Join(dir, filepath.Base(f))})
	}
	return ps
}

// locator maps archive paths to local paths through placements: the longest placed prefix wins.
// Paths no placement covers map under fallback (the extraction directory), or to "" without one.
func locator(ps []Placement, fallback string) func(string) string {
	sorted := append([]Placement{}, ps...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].From) > len(sorted[j].From) })
	return func(p string) string {
		p = path.Clean(p)
		for _, pl := range sorted {
			if p == pl.From {
				return pl.To
			}
			if rest, ok := strings.CutPrefix(p, pl.From+"/"); ok {
				return filepath.Join(pl.To, filepath.FromSlash(rest))
			}
		}
		if fallback == "" {
			return ""
		}
		return filepath.Join(fallback, filepath.FromSlash(p))
	}
}

// describe names a placement for people.
// Describe names what a placement holds, for people.
func (p Placement) Describe() string {
	switch p.Group {
	case sources.GroupCouchDB:
		return "CouchDB data directory"
	case sources.GroupEnv:
		return "upgrade-service .env (holds secrets)"
	case sources.GroupCompose:
		return "compose file"
	case sources.GroupTLS:
		return "TLS files (nginx)"
	case sources.GroupCredentials:
		return "CouchDB credentials"
	case GroupManifest:
		return "manifest"
	}
	return p.Group
}

func (cp ContainerPart) describe() string {
	switch cp.Group {
	case sources.GroupTLS:
		return "TLS certificate and key"
	case sources.GroupCredentials:
		return "CouchDB credentials (cluster-credentials.ini)"
	}
	return fmt.Sprintf("%s files", cp.Group)
}
