// Package sources knows what a CHT host holds and gathers it for a backup.
//
// It owns the reading of the upgrade service's .env file (docker compose
// env-file rules), the resolution of the host layout from --cht-dir, the
// lookup of the compose project's nginx and couchdb containers through the
// Docker Engine API, the staging directory that holds what has no file on
// the host (files copied out of containers and the manifest), and the
// manifest itself. It never copies the CouchDB data directory: borg reads it
// in place, view indexes (.shards) first.
package sources
