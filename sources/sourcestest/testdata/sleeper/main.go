// Command sleeper is the only program in the test containers' image: it
// waits for SIGTERM or SIGINT so that a container runs until stopped.
// Built statically (CGO_ENABLED=0) because the image has no libc.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
