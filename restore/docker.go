package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// ContainerState is a container of the CHT compose project as a restore saw it.
type ContainerState struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Service string `json:"service,omitempty"`
	State   string `json:"state"` // as the engine reports it: running, exited, created, ...
	FoundBy string `json:"found_by"`
}

// knownServices are CHT's compose services in start order (CouchDB first, nginx last); they find
// containers by name on engines whose containers carry no compose labels.
var knownServices = []string{"couchdb", "nouveau", "haproxy", "healthcheck", "api", "sentinel", "nginx"}

func serviceRank(s string) int {
	for i, k := range knownServices {
		if k == s {
			return i
		}
	}
	return len(knownServices)
}

// projectContainers lists the compose project's containers, stopped ones included: every
// container carrying its project label, else those named as compose (v1 or v2) names CHT's services.
func projectContainers(ctx context.Context, cli *client.Client, project string) ([]ContainerState, error) {
	ctx, cancel := sources.DockerCall(ctx)
	defer cancel()
	labelled, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", sources.LabelProject+"="+project))})
	if err != nil {
		return nil, fmt.Errorf("cannot list Docker containers: %v; check that dockerd runs", err)
	}
	var out []ContainerState
	for _, c := range labelled {
		if strings.EqualFold(c.Labels["com.docker.compose.oneoff"], "true") {
			continue
		}
		out = append(out, toState(c, c.Labels[sources.LabelService], "labels"))
	}
	if len(out) == 0 {
		all, err := cli.ContainerList(ctx, container.ListOptions{All: true})
		if err != nil {
			return nil, fmt.Errorf("cannot list Docker containers: %v; check that dockerd runs", err)
		}
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(project) + `[-_](` + strings.Join(knownServices, "|") + `)[-_][0-9]+$`)
		for _, c := range all {
			for _, n := range c.Names {
				if m := re.FindStringSubmatch(strings.TrimPrefix(n, "/")); m != nil {
					out = append(out, toState(c, m[1], "name"))
					break
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return serviceRank(out[i].Service) < serviceRank(out[j].Service) })
	return out, nil
}

func toState(c container.Summary, service, by string) ContainerState {
	name := c.ID
	if len(c.Names) > 0 {
		name = strings.TrimPrefix(c.Names[0], "/")
	}
	return ContainerState{ID: c.ID, Name: name, Service: service, State: string(c.State), FoundBy: by}
}

// isUp says whether a container is (or is about to be) running and so must be stopped.
func isUp(state string) bool {
	switch state {
	case "running", "restarting", "paused":
		return true
	}
	return false
}

// inspectState reads a container's current state.
func inspectState(ctx context.Context, cli *client.Client, c ContainerState) ContainerState {
	ctx, cancel := sources.DockerCall(ctx)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		c.State = "unknown (" + err.Error() + ")"
		return c
	}
	if info.State != nil {
		c.State = string(info.State.Status)
	}
	return c
}

// settle is how long started containers get before their state is read: one that fails at once
// (bad data, missing credentials) has exited or is restarting by then.
const settle = 2 * time.Second

// tarDir packs the contents of dir (not dir itself) with their modes, numeric owners, times and
// symlinks, as CopyToContainer takes them, and lists the non-directories it packed.
func tarDir(dir string) (*bytes.Buffer, []string, error) {
	var buf bytes.Buffer
	var names []string
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = rel, "", ""
		if fi.IsDir() {
			h.Name += "/"
		} else {
			names = append(names, rel)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &buf, names, tw.Close()
}

// putBack copies the contents of dir into the container's directory dst. It works on stopped
// containers (the engine mounts their volumes for the copy). An entry whose type differs from
// what the container has (a directory where the archive has a file) is refused, not replaced.
func putBack(ctx context.Context, cli *client.Client, c sources.Container, dir, dst string) ([]string, error) {
	buf, names, err := tarDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot pack %s: %v", dir, err)
	}
	ctx, cancel := sources.DockerCall(ctx)
	defer cancel()
	if err := cli.CopyToContainer(ctx, c.ID, dst, buf, container.CopyToContainerOptions{}); err != nil {
		return nil, fmt.Errorf("cannot copy the files into %s:%s: %v", c.Name, dst, err)
	}
	return names, nil
}
