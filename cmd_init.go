package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
	xssh "golang.org/x/crypto/ssh"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create each repository (repokey-blake2, append-only) and export its key; safe to run again",
		Description: "Creates each --repo with `borg init --encryption repokey-blake2 --append-only`. A repository that\n" +
			"already exists with that encryption is reported and left alone; another mode is an error. The key is\n" +
			"exported (plain and --paper) to files under the state dir, and the authorized_keys line the backup\n" +
			"server should carry for this host is printed.",
		Flags: []cli.Flag{jsonFlag, chunkerParamsFlag},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			return runInit(c, o, os.Stdout)
		}),
	}
}

// InitResult is what init did for one repository.
type InitResult struct {
	Repository     string `json:"repository"`
	Created        bool   `json:"created"`
	Encryption     string `json:"encryption"`
	KeyFile        string `json:"key_file"`
	PaperKeyFile   string `json:"paper_key_file"`
	AuthorizedKeys string `json:"authorized_keys,omitempty"`

	user string // the ssh user of the repository, for the printed advice
}

func runInit(c *cli.Context, o *options, out io.Writer) error {
	if err := o.requireRepos(); err != nil {
		return err
	}
	if _, err := parseChunkerFlag(c); err != nil {
		return err
	}
	r, err := o.runner(c.Context, true)
	if err != nil {
		return err
	}
	keyDir := filepath.Join(o.StateDir, "keys")

	var results []InitResult
	for _, repo := range o.Repos {
		res, err := initOne(c, o, r, repo, keyDir)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	if o.JSON {
		return writeJSON(out, results)
	}
	for _, res := range results {
		if res.Created {
			fmt.Fprintf(out, "created %s (%s, append-only)\n", res.Repository, res.Encryption)
		} else {
			fmt.Fprintf(out, "exists  %s (%s): left alone\n", res.Repository, res.Encryption)
		}
		fmt.Fprintf(out, "        key exported to %s and %s (mode 0600)\n", res.KeyFile, res.PaperKeyFile)
		if res.AuthorizedKeys != "" {
			fmt.Fprintf(out, "        on the backup server, ~%s/.ssh/authorized_keys should hold this line for this host, so that\n", res.user)
			fmt.Fprintf(out, "        append-only is enforced by the server and a compromised client cannot delete archives:\n")
			fmt.Fprintf(out, "        %s\n", res.AuthorizedKeys)
			fmt.Fprintf(out, "        `cht-backup schedule print --server` prints all the server needs: this line, a compaction key\n")
			fmt.Fprintf(out, "        (the only way pruned archives free space) and the units that compact and watch for missed backups.\n")
		}
	}
	fmt.Fprintln(out, "\nIMPORTANT: restoring needs BOTH the exported key and the passphrase. Store copies of both somewhere")
	fmt.Fprintln(out, "other than this server (a password manager, a printed copy in a safe); if this server's disk dies,")
	fmt.Fprintln(out, "copies kept only here are lost with it.")
	return nil
}

func initOne(c *cli.Context, o *options, r *borg.Runner, repo borg.Repository, keyDir string) (InitResult, error) {
	res := InitResult{Repository: repo.Raw, user: repo.User}
	if res.user == "" {
		res.user = "borg"
	}
	ctx := c.Context
	if !repo.Local() {
		learnt := make(chan struct{})
		go func() {
			defer close(learnt)
			learnServerKey(ctx, o, repo)
		}()
		defer func() { <-learnt }()
	}
	_, err := r.Run(ctx, borg.Call{Args: borg.InitArgs(repo)})
	switch {
	case err == nil:
		res.Created = true
		res.Encryption = borg.Encryption
		o.Log.WithField("repository", repo.Raw).Info("repository created")
		// A new repository's archives are cut for CouchDB from the first one on.
		chunking := state.Chunking{Params: borg.CouchDBChunkerParams, Source: "new repository", Empty: true}
		if p, _ := parseChunkerFlag(c); p != "" {
			chunking.Params, chunking.Source = p, "--chunker-params"
		}
		if err := state.RecordChunking(o.StateDir, repo.Raw, chunking); err != nil {
			o.Log.Errorf("chunker params of %s not recorded: %v; its archives will be cut with borg's defaults", repo.Raw, err)
		}
	case errors.Is(err, borg.ErrRepoExists):
		info, err := repositoryInfo(c, r, repo)
		if err != nil {
			return res, err
		}
		res.Encryption = info.Encryption.Mode
		if info.Encryption.Mode != borg.Encryption {
			return res, &userError{
				err:  fmt.Errorf("repository %s already exists with encryption %q, not %s", repo.Raw, info.Encryption.Mode, borg.Encryption),
				hint: "cht-backup only uses repokey-blake2 repositories: choose another --repo path for a new one",
			}
		}
		if repo.Local() {
			if ao, err := localAppendOnly(repo.Path); err == nil && !ao {
				o.Log.WithField("repository", repo.Raw).Warn("repository exists but is not append-only; run `borg config REPO append_only 1` on it")
			}
		}
	default:
		return res, err
	}

	keys, err := exportKeys(ctx, r, repo, keyDir)
	if err != nil {
		return res, err
	}
	res.KeyFile, res.PaperKeyFile = keys.KeyFile, keys.PaperKeyFile
	if !repo.Local() {
		line, err := authorizedKeysLine(o.SSHKey, repo)
		if err != nil {
			o.Log.Warnf("cannot build the authorized_keys line: %v", err)
		}
		res.AuthorizedKeys = line
	}
	return res, nil
}

func repositoryInfo(c *cli.Context, r *borg.Runner, repo borg.Repository) (*borg.RepositoryInfo, error) {
	out, err := r.Run(c.Context, borg.Call{Args: borg.InfoArgs(repo, "")})
	if err != nil {
		return nil, err
	}
	var info borg.RepositoryInfo
	if err := json.Unmarshal(out.Stdout, &info); err != nil {
		return nil, fmt.Errorf("cannot read `borg info --json` output for %s: %v", repo.Raw, err)
	}
	return &info, nil
}

// exportKey writes the key to path, mode 0600. borg prints it to stdout, and the tool writes the
// file itself: through a temporary file of unpredictable name created with O_EXCL (a symlink
// planted in the directory is never followed), renamed over path once complete.
func exportKey(ctx context.Context, r *borg.Runner, repo borg.Repository, path string, paper bool) error {
	var key bytes.Buffer
	if _, err := r.Run(ctx, borg.Call{Args: borg.KeyExportArgs(repo, "-", paper), Stdout: &key}); err != nil {
		return err
	}
	if key.Len() == 0 {
		return fmt.Errorf("borg key export of %s printed no key", repo.Raw)
	}
	return state.WriteFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := w.Write(key.Bytes())
		return err
	})
}

var slugRe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// slug turns a repository URL into a file name.
func slug(s string) string {
	s = strings.TrimPrefix(s, "ssh://")
	return strings.Trim(slugRe.ReplaceAllString(s, "_"), "_.")
}

func localAppendOnly(repoPath string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(repoPath, "config"))
	if err != nil {
		return false, err
	}
	return regexp.MustCompile(`(?m)^append_only\s*=\s*1\s*$`).Match(b), nil
}

// authorizedKeysLine is the line the backup server should carry for this host's key: the server
// itself forces borg serve in append-only mode, restricted to the repository path, so a
// compromised client cannot undo append-only.
func authorizedKeysLine(keyFile string, repo borg.Repository) (string, error) {
	pub := "<this host's public key>"
	if keyFile != "" {
		k, err := publicKeyOf(keyFile)
		if err != nil {
			return "", err
		}
		pub = k
	}
	host, _ := os.Hostname()
	who := "root"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	return fmt.Sprintf(`command="borg serve --append-only --restrict-to-path %s",restrict %s cht-backup@%s`, repo.Path, pub, who+"-"+host), nil
}

// publicKeyOf reads KEY.pub, or derives the public key from the (unencrypted) private key.
func publicKeyOf(keyFile string) (string, error) {
	if b, err := os.ReadFile(keyFile + ".pub"); err == nil {
		if k, _, _, _, err := xssh.ParseAuthorizedKey(b); err == nil {
			return strings.TrimSpace(string(xssh.MarshalAuthorizedKey(k))), nil
		}
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", err
	}
	signer, err := xssh.ParsePrivateKey(b)
	if err != nil {
		return "", fmt.Errorf("cannot read the public key of %s: %v", keyFile, err)
	}
	return strings.TrimSpace(string(xssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}
