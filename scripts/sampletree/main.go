// Command sampletree writes a throwaway CHT-like directory (upgrade-service/.env, compose files,
// a CouchDB data dir with shards and view indexes) for the demo and for trying cht-backup out.
// Its .env holds made-up secrets only.
//
//	go run ./scripts/sampletree [-size BYTES] DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func main() {
	size := flag.Int("size", 64<<10, "bytes of random data per CouchDB file")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: sampletree [-size BYTES] DIR")
		os.Exit(3)
	}
	tree, err := sourcestest.WriteTree(flag.Arg(0), sourcestest.Options{FileSize: *size})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampletree:", err)
		os.Exit(2)
	}
	fmt.Printf("CHT tree at %s: %d CouchDB files, %d view index files, %d compose files\n",
		tree.Root, len(tree.CouchFiles), len(tree.ViewFiles), len(tree.ComposeFiles))
}
