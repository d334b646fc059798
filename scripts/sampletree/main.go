// Command sampletree writes a throwaway CHT-like directory (upgrade-service/.env, compose files,
// a CouchDB data dir with shards and view indexes) for the demo, the benchmark and trying
// cht-backup out. Its .env holds made-up secrets only.
//
//	go run ./scripts/sampletree [-size BYTES] [-ranges N] [-dbs N] DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func main() {
	size := flag.Int("size", 64<<10, "bytes of random data per CouchDB file")
	ranges := flag.Int("ranges", 0, "shard ranges (0: the fixture's default of 2)")
	dbs := flag.Int("dbs", 0, "databases besides the default medic, medic-sentinel and _users")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: sampletree [-size BYTES] [-ranges N] [-dbs N] DIR")
		os.Exit(3)
	}
	o := sourcestest.Options{FileSize: *size}
	if *ranges > 0 {
		step := uint64(1<<32) / uint64(*ranges)
		for i := 0; i < *ranges; i++ {
			lo := uint64(i) * step
			hi := lo + step - 1
			if i == *ranges-1 {
				hi = 1<<32 - 1
			}
			o.ShardRanges = append(o.ShardRanges, fmt.Sprintf("%08x-%08x", lo, hi))
		}
	}
	if *dbs > 0 {
		o.Databases = []string{"medic", "medic-sentinel", "_users"}
		for i := 0; i < *dbs; i++ {
			o.Databases = append(o.Databases, fmt.Sprintf("medic-user-%d-meta", i))
		}
	}
	tree, err := sourcestest.WriteTree(flag.Arg(0), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampletree:", err)
		os.Exit(2)
	}
	fmt.Printf("CHT tree at %s: %d CouchDB files, %d view index files, %d compose files\n",
		tree.Root, len(tree.CouchFiles), len(tree.ViewFiles), len(tree.ComposeFiles))
}
