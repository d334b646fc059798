package state

import "time"

// ServerKeyTrusted is how long a learnt ServerKey is used before it is asked again. Asking a
// server that forces the key to borg serve starts borg serve there, a Python start-up of about
// half a second of CPU that a nightly backup need not spend; a key whose authorized_keys line
// changed is learnt again within this time.
const ServerKeyTrusted = 7 * 24 * time.Hour

// ServerKey is what a server allows one SSH key, as last learnt.
type ServerKey struct {
	// Forced: the server runs borg serve whatever command the key asks for, so df, whoami and
	// the like cannot run there.
	Forced bool      `json:"forced_command"`
	Learnt time.Time `json:"learnt"`
}

// ServerKey is what was learnt of login (a user@host:port and key, as the caller names it) no
// longer ago than ServerKeyTrusted before now; ok is false when nothing that recent is known.
func (f *File) ServerKey(login string, now time.Time) (k ServerKey, ok bool) {
	k, ok = f.ServerKeys[login]
	if !ok || now.Sub(k.Learnt) > ServerKeyTrusted || k.Learnt.After(now) {
		return ServerKey{}, false
	}
	return k, true
}

// RecordServerKey keeps what was learnt of login's key.
func RecordServerKey(stateDir, login string, k ServerKey) error {
	return update(stateDir, func(f *File) {
		if f.ServerKeys == nil {
			f.ServerKeys = map[string]ServerKey{}
		}
		k.Learnt = k.Learnt.UTC()
		f.ServerKeys[login] = k
	})
}
