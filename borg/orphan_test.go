package borg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanHelperEnv makes the test binary, started again by TestRunnerChildDiesWithItsParent, the
// parent whose child the runner starts.
const orphanHelperEnv = "CHT_BACKUP_ORPHAN_HELPER"

// A run killed outright (SIGKILL: nothing of ours runs) leaves no borg running on as an orphan:
// the kernel signals borg when its parent dies.
func TestRunnerChildDiesWithItsParent(t *testing.T) {
	if os.Getenv(orphanHelperEnv) == "1" {
		// The helper: its child stands in for borg and runs until a signal ends it.
		r := NewRunner(Credentials{}, nil)
		r.Binary = "sleep"
		_, err := r.Run(context.Background(), Call{Args: []string{"300"}})
		t.Fatalf("the child ended: %v", err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestRunnerChildDiesWithItsParent$")
	helper.Env = append(os.Environ(), orphanHelperEnv+"=1")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	child := 0
	for deadline := time.Now().Add(30 * time.Second); child == 0; {
		child = childOf(helper.Process.Pid, "sleep")
		if time.Now().After(deadline) {
			t.Fatal("the runner's child never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	for deadline := time.Now().Add(30 * time.Second); alive(child); {
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("the runner's child (pid %d) runs on after its parent was killed", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childOf finds a child of pid with the given command name, or 0.
func childOf(pid int, comm string) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < 0 || s[open+1:close] != comm {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(strings.Fields(s)[0])
			return n
		}
	}
	return 0
}

// alive says whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}
