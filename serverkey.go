package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/ssh"
	"github.com/cht-backup/cht-backup/state"
)

// serverLogin names an SSH login in the state's server-key record: user, host and port as
// dialled, and the key that logs in (what the server's authorized_keys line is about).
func serverLogin(o *options, t ssh.Target) string {
	key := o.SSHKey
	if key == "" {
		key = "ssh-agent"
	}
	port := t.Port
	if port == 0 {
		port = 22
	}
	return fmt.Sprintf("%s@%s:%d key %s", t.User, t.Host, port, key)
}

// knownServerKey is what the state says of login, when it was learnt recently enough.
func knownServerKey(o *options, login string) (state.ServerKey, bool) {
	f, err := state.Load(o.StateDir)
	if err != nil {
		return state.ServerKey{}, false
	}
	return f.ServerKey(login, time.Now())
}

// learntServerKey records whether the server forces login's key to borg serve, unless the state
// already says so (recently enough); a failed write only means the next run asks again.
func learntServerKey(o *options, login string, forced bool) {
	if k, ok := knownServerKey(o, login); ok && k.Forced == forced {
		return
	}
	if err := state.RecordServerKey(o.StateDir, login, state.ServerKey{Forced: forced, Learnt: time.Now()}); err != nil {
		o.Log.Debugf("what %s allows its key not recorded: %v", login, err)
	}
}

// learnServerKey asks the server of a new repository whether it forces the key to borg serve,
// so that the first backup need not. Started beside borg init, it costs init no wall time;
// whatever fails here, borg init reports better, so failures are only logged at debug level.
func learnServerKey(ctx context.Context, o *options, repo borg.Repository) {
	ctx, cancel := context.WithTimeout(ctx, ssh.CheckTimeout)
	defer cancel()
	c, t, err := o.dialRepository(ctx, repo)
	if err != nil {
		o.Log.Debugf("not learnt whether %s forces the key to borg serve: %v", repo.Host, err)
		return
	}
	defer c.Close()
	forced, err := c.Forced(ctx)
	if err != nil {
		o.Log.Debugf("not learnt whether %s forces the key to borg serve: %v", repo.Host, err)
		return
	}
	learntServerKey(o, serverLogin(o, t), forced)
}
