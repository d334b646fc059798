// Package restore owns putting an archive back and proving it can be: extracting an archive made
// by `cht-backup backup` (borg runs only through borg.Runner), laying it out in a directory
// (ToTarget), putting it back onto a CHT host (PlanInPlace, then Plan.Run), and the restore drill
// (Verify), which extracts into scratch space and compares the result with the archive's manifest.
//
// The --target layout of DIR:
//
//	DIR/manifest.json              what the archive holds (sources.Manifest)
//	DIR/couchdb/                   the contents of COUCHDB_DATA; the directory gets the recorded mode and owner
//	DIR/upgrade-service/.env       the upgrade service's env file (mode 0600, cleartext secrets)
//	DIR/upgrade-service/*.yml      compose files that sat next to .env (the upgrade service's own)
//	DIR/compose/*.yml              compose files from CHT_COMPOSE_PATH (cht-core.yml, cht-couchdb.yml)
//	DIR/tls/                       the nginx container's /etc/nginx/private/ (cert.pem, key.pem, ...)
//	DIR/credentials/               the couchdb container's /opt/couchdb/etc/local.d/ (cluster-credentials.ini)
//	DIR/unsorted/                  archive items none of the above covers (normally absent)
//
// A part the backup skipped is absent. Owners are restored by number when run as root.
//
// In place, archive paths are mapped onto this host this way: the archive's CHT directory becomes
// --cht-dir, so .env goes to <cht-dir>/upgrade-service/.env and the upgrade service's compose
// files next to it; the CouchDB data goes to the COUCHDB_DATA that the restored .env names, and
// the other compose files to its CHT_COMPOSE_PATH (relative values resolved against
// <cht-dir>/upgrade-service/, defaults <cht-dir>/couchdb and <cht-dir>/compose, as sources does).
// That is where docker compose, run with the restored .env, will look for them. The TLS files and
// the credentials go back into the nginx and couchdb containers of the compose project the
// restored .env names.
//
// A restore never deletes what is there: it is renamed to <path>.before-restore-<UTC time>.
package restore
