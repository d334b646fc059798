package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Compose labels every compose version (v1 and v2) puts on the containers it creates.
const (
	LabelProject = "com.docker.compose.project"
	LabelService = "com.docker.compose.service"
	labelOneOff  = "com.docker.compose.oneoff"
	labelNumber  = "com.docker.compose.container-number"
)

// Compose service names of the CHT containers whose files a backup copies out.
const (
	ServiceNginx   = "nginx"
	ServiceCouchDB = "couchdb"
)

// DockerTimeout bounds every Docker API call (a copy out of a container included): an engine
// that accepts connections but never answers must not hold a backup, and the host lock, for hours.
var DockerTimeout = 30 * time.Second

// MaxContainerCopy caps what is copied out of one container directory. The TLS files and
// CouchDB's credentials are a few KiB; anything near this is not what a backup should stage.
var MaxContainerCopy int64 = 64 << 20

// DockerCall gives one Docker API call its deadline, DockerTimeout (restore uses it too).
func DockerCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, DockerTimeout)
}

// dockerProblem words a failed Docker call, naming the deadline when that is what ended it.
func dockerProblem(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || (ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		return fmt.Sprintf("the Docker engine did not answer within %s", DockerTimeout)
	}
	return err.Error()
}

// NewDockerClient connects to the engine named by DOCKER_HOST (default the
// local socket) and negotiates the API version, so engines from Docker 20.10
// (API 1.41) to current ones work. It checks the engine answers within DockerTimeout.
func NewDockerClient(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("cannot set up a Docker client: %w; check DOCKER_HOST", err)
	}
	cctx, cancel := DockerCall(ctx)
	defer cancel()
	if _, err := cli.Ping(cctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("cannot reach the Docker engine: %s; check that dockerd runs (systemctl status docker) and that this runs as root", dockerProblem(cctx, err))
	}
	return cli, nil
}

// Container is a compose service's container found on the engine.
type Container struct {
	ID      string `json:"id"`
	Name    string `json:"name"`     // without the leading "/"
	Image   string `json:"image"`    // as the engine reports it
	State   string `json:"state"`    // "running", "exited", "created", ...
	FoundBy string `json:"found_by"` // "labels" or "name"
}

// ErrContainerNotFound is FindContainer's error when the engine answered but has no such
// container, as opposed to an engine that could not be asked.
var ErrContainerNotFound = errors.New("no such container")

// FindContainer finds the container of a compose service, stopped ones
// included: first by the compose labels, then by the container names compose
// v1 (<project>_<service>_1) and v2 (<project>-<service>-1) give.
func FindContainer(ctx context.Context, cli *client.Client, project, service string) (Container, error) {
	if cli == nil {
		return Container{}, errors.New("no Docker client to find containers with")
	}
	lctx, cancel := DockerCall(ctx)
	defer cancel()
	labelled, err := cli.ContainerList(lctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelProject+"="+project),
			filters.Arg("label", LabelService+"="+service),
		),
	})
	if err != nil {
		return Container{}, fmt.Errorf("cannot list Docker containers: %s; check that dockerd runs", dockerProblem(lctx, err))
	}
	var cands []container.Summary
	for _, c := range labelled {
		if !strings.EqualFold(c.Labels[labelOneOff], "true") {
			cands = append(cands, c)
		}
	}
	if len(cands) > 0 {
		// Several containers of one service (scaled, or left over): the
		// running one first, then compose's container number 1.
		sort.SliceStable(cands, func(i, j int) bool {
			ri, rj := cands[i].State == container.StateRunning, cands[j].State == container.StateRunning
			if ri != rj {
				return ri
			}
			return cands[i].Labels[labelNumber] == "1" && cands[j].Labels[labelNumber] != "1"
		})
		return toContainer(cands[0], "labels"), nil
	}

	names := []string{project + "_" + service + "_1", project + "-" + service + "-1"}
	actx, cancel2 := DockerCall(ctx)
	defer cancel2()
	all, err := cli.ContainerList(actx, container.ListOptions{All: true})
	if err != nil {
		return Container{}, fmt.Errorf("cannot list Docker containers: %s; check that dockerd runs", dockerProblem(actx, err))
	}
	for _, want := range names {
		for _, c := range all {
			for _, n := range c.Names {
				if strings.TrimPrefix(n, "/") == want {
					return toContainer(c, "name"), nil
				}
			}
		}
	}
	return Container{}, fmt.Errorf("no container found for the %s service of compose project %q: tried labels %s=%s,%s=%s and names %s; check `docker ps -a` and CHT_COMPOSE_PROJECT_NAME in the upgrade service's .env: %w",
		service, project, LabelProject, project, LabelService, service, strings.Join(names, ", "), ErrContainerNotFound)
}

func toContainer(c container.Summary, by string) Container {
	name := c.ID
	if len(c.Names) > 0 {
		name = strings.TrimPrefix(c.Names[0], "/")
	}
	return Container{ID: c.ID, Name: name, Image: c.Image, State: string(c.State), FoundBy: by}
}

// CopyFromContainer copies the directory srcDir out of a container (running
// or stopped) into destDir, which must not exist yet, keeping modes, owners,
// times and symlinks. Entries that would land outside destDir or be written
// through a symlink are refused.
func CopyFromContainer(ctx context.Context, cli *client.Client, c Container, srcDir, destDir string) error {
	// One deadline for the request and the whole stream: the copy is a few KiB.
	ctx, cancel := DockerCall(ctx)
	defer cancel()
	rc, stat, err := cli.CopyFromContainer(ctx, c.ID, srcDir)
	if err != nil {
		if client.IsErrNotFound(err) {
			return fmt.Errorf("%s is missing in container %s (image %s); check with `docker ps -a` that this is the right container", srcDir, c.Name, c.Image)
		}
		return fmt.Errorf("cannot copy %s out of container %s: %s", srcDir, c.Name, dockerProblem(ctx, err))
	}
	defer rc.Close()
	if !stat.Mode.IsDir() {
		return fmt.Errorf("%s in container %s is not a directory (mode %v)", srcDir, c.Name, stat.Mode)
	}
	if err := os.MkdirAll(filepath.Dir(destDir), 0o700); err != nil {
		return err
	}
	// The engine names every entry after the base name of srcDir.
	top := path.Base(path.Clean("/" + strings.TrimSuffix(srcDir, "/")))
	if stat.Name != "" {
		top = stat.Name
	}
	capped := &cappedReader{r: rc, left: MaxContainerCopy}
	if err := untar(capped, destDir, top); err != nil {
		if capped.over {
			return fmt.Errorf("%s in container %s holds more than %s, far more than %s should; check that container: %w", srcDir, c.Name, HumanBytes(MaxContainerCopy), srcDir, errTooLarge)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cannot copy %s out of container %s: %s", srcDir, c.Name, dockerProblem(ctx, ctx.Err()))
		}
		return fmt.Errorf("cannot unpack %s from container %s: %w", srcDir, c.Name, err)
	}
	return nil
}

var errTooLarge = errors.New("copy too large")

// cappedReader fails once more than left bytes were read.
type cappedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.over = true
		return 0, errTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left+1] // one byte more tells "exactly at the cap" from "over it"
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		c.over = true
		return n, errTooLarge
	}
	return n, err
}
