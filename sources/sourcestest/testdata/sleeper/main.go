// Command sleeper is the only program in the test containers' image: it
// waits for SIGTERM or SIGINT so that a container runs until stopped.
// Built statically (CGO_ENABLED=0) because the image has no libc.
//
// When SLEEPER_EXIT_IF names a file that exists at start, it exits 1 at once
// instead, as a service does whose configuration went bad while it was
// stopped: the container starts, then is no longer running.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if p := os.Getenv("SLEEPER_EXIT_IF"); p != "" {
		if _, err := os.Stat(p); err == nil {
			fmt.Fprintf(os.Stderr, "sleeper: %s exists, exiting\n", p)
			os.Exit(1)
		}
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
