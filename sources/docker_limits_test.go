//go:build !mutation

package sources

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// A Docker socket that accepts connections and never answers must not hang a backup: every call
// has a deadline, and the error says the engine did not answer.
func TestDockerCallsHaveADeadline(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c // accepted, never answered
		}
	}()
	defer func() {
		l.Close()
		for c := range held {
			c.Close()
		}
	}()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	old := DockerTimeout
	DockerTimeout = time.Second
	defer func() { DockerTimeout = old }()

	start := time.Now()
	_, err = NewDockerClient(context.Background())
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s") {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the deadline did not hold: %s", d)
	}
}

// What is copied out of a container is capped: a directory far larger than TLS files and
// credentials ever are is refused, not staged.
func TestCopyFromContainerIsCapped(t *testing.T) {
	ctx := context.Background()
	cs := sourcestest.StartContainers(t, ctx, "", sourcestest.LabelsOnly)
	c, err := FindContainer(ctx, cs.Client, cs.Project, ServiceNginx)
	if err != nil {
		t.Fatal(err)
	}
	old := MaxContainerCopy
	MaxContainerCopy = 512
	defer func() { MaxContainerCopy = old }()
	err = CopyFromContainer(ctx, cs.Client, c, "/etc/nginx/private/", filepath.Join(t.TempDir(), "tls"))
	if err == nil || !strings.Contains(err.Error(), "holds more than 512 B") {
		t.Fatalf("want the cap to refuse the copy, got %v", err)
	}
	MaxContainerCopy = old
	if err := CopyFromContainer(ctx, cs.Client, c, "/etc/nginx/private/", filepath.Join(t.TempDir(), "tls")); err != nil {
		t.Fatalf("under the cap the copy works: %v", err)
	}
}
