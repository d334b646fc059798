package main

// Temporary: keeps the four agreed dependencies in go.mod while packages are written.
import (
	_ "github.com/docker/docker/client"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
)

func main() {}
