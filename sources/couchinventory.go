package sources

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// couchInventory builds a CouchDBInventory from the entries of a walk of the data directory, so
// the walk that counts the CouchDB groups gives the inventory too.
type couchInventory struct {
	data   string
	ranges []string
	dbs    map[string]*Database
}

func newCouchInventory(dataDir string) *couchInventory {
	return &couchInventory{data: dataDir, dbs: map[string]*Database{}}
}

// visit counts one entry met under the data directory, with sign 1, or uncounts it with -1:
// range directories directly under shards/, shard files shards/<range>/<db>.<suffix>.couch
// (<db> may hold "/") and view index files .shards/<range>/<db>.<suffix>_design/...
func (c *couchInventory) visit(p string, d fs.DirEntry, size int64, sign int) {
	rel, err := filepath.Rel(c.data, p)
	if err != nil {
		return
	}
	parts := strings.SplitN(filepath.ToSlash(rel), "/", 3)
	if len(parts) < 2 || (parts[0] != "shards" && parts[0] != ".shards") {
		return
	}
	if len(parts) == 2 {
		if d.IsDir() && parts[0] == "shards" && sign > 0 {
			c.ranges = append(c.ranges, parts[1])
		}
		return
	}
	if d.Type().IsRegular() {
		addDatabaseFile(c.database, parts[0] == ".shards", parts[2], size, sign)
	}
}

// database is the inventory's entry for a database, made when first met.
func (c *couchInventory) database(name string) *Database {
	if c.dbs[name] == nil {
		c.dbs[name] = &Database{Name: name}
	}
	return c.dbs[name]
}

// result adds the data directory's own mode, owner and entries, and sorts.
func (c *couchInventory) result() (CouchDBInventory, error) {
	inv := CouchDBInventory{RootEntries: []string{}, ShardRanges: append([]string{}, c.ranges...), Databases: []Database{}}
	var err error
	if inv.DataDir, err = ownerOf(c.data); err != nil {
		return inv, fmt.Errorf("cannot read CouchDB data directory %s: %v", c.data, unwrapPathError(err))
	}
	entries, err := os.ReadDir(c.data)
	if err != nil {
		return inv, fmt.Errorf("cannot read CouchDB data directory %s: %v", c.data, unwrapPathError(err))
	}
	for _, e := range entries {
		inv.RootEntries = append(inv.RootEntries, e.Name())
	}
	inv.Databases = sortedDatabases(c.dbs)
	sort.Strings(inv.ShardRanges)
	return inv, nil
}
