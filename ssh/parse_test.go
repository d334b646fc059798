package ssh

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestParseDF(t *testing.T) {
	tests := []struct {
		name, out string
		want      uint64
		wantErr   bool
	}{
		{"GNU df -Pk", "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/sda1        102626232 48392012  49075100      50% /\n", 49075100 * 1024, false},
		{"blanks in names", "Filesystem 1024-blocks Used Available Capacity Mounted on\nmy nas:/vol 1 000 10 4 6 40% /mnt/back up\n", 6 * 1024, false},
		{"busybox", "Filesystem           1024-blocks    Used Available Capacity Mounted on\noverlay                 61202244  9238540  48822312  16% /\n", 48822312 * 1024, false},
		{"no percent on pseudo fs", "Filesystem 1024-blocks Used Available Capacity Mounted on\nnone 0 0 0 - /proc\n", 0, false},
		{"header only", "Filesystem 1024-blocks Used Available Capacity Mounted on\n", 0, true},
		{"error text", "df: /x: No such file or directory\n", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDF(tt.out)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseDF = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseEpoch(t *testing.T) {
	tests := []struct {
		out     string
		want    time.Time
		wantErr bool
	}{
		{"1700000000\n", time.Unix(1700000000, 0), false},
		{"1700000000.250000000\n", time.Unix(1700000000, 250000000), false},
		{"1700000000.5\n", time.Unix(1700000000, 500000000), false},
		{"1700000000.%N\n", time.Unix(1700000000, 0), false}, // date without %N
		{"1700000000.N\n", time.Unix(1700000000, 0), false},
		{"Welcome!\n1700000000.1\n", time.Unix(1700000000, 100000000), false},
		{"Tue Nov 14 22:13:20 UTC 2023\n", time.Time{}, true},
		{"+1700000000\n", time.Time{}, true},
		{"", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseEpoch(tt.out)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("parseEpoch(%q) = %v, %v; want %v (error %v)", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseBorgVersion(t *testing.T) {
	tests := []struct{ out, want string }{
		{"borg 1.2.4\n", "1.2.4"},
		{"borg 1.4.0b2\n", "1.4.0b2"},
		{"borg.exe 1.2.8\n", "1.2.8"},
		{"motd line\nborg 1.2.4\n", "1.2.4"},
		{"bash: borg: command not found\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := parseBorgVersion(tt.out)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("parseBorgVersion(%q) = %q, %v; want %q", tt.out, got, err, tt.want)
		}
	}
}

func TestDFScriptPaths(t *testing.T) {
	loop := `; n=0; while [ ! -e "$p" ] && [ $n -lt 64 ]; do p=$(dirname -- "$p"); n=$((n+1)); done; df -Pk -- "$p"`
	tests := []struct{ path, wantP string }{
		{"", `.`},
		{"cht", `'cht'`},
		{"/./cht", `'cht'`},
		{"/srv/borg/cht", `'/srv/borg/cht'`},
		{"/~/cht", `"$HOME"'/cht'`},
		{"~/cht", `"$HOME"'/cht'`},
		{"~", `"$HOME"`},
		{"/~borg/cht", `~borg'/cht'`},
		{"~borg", `~borg`},
		{"/srv/it's", `'/srv/it'\''s'`},
		{"/srv/$(reboot)", `'/srv/$(reboot)'`},
	}
	for _, tt := range tests {
		got, err := dfScript(tt.path)
		if want := "p=" + tt.wantP + loop; err != nil || got != want {
			t.Errorf("dfScript(%q) = %s, %v\nwant %s", tt.path, got, err, want)
		}
	}
	if _, err := dfScript("~$(reboot)/x"); err == nil {
		t.Error("dfScript accepted a command substitution as a user name")
	}
}

func TestHostKeyAlgorithmsFollowKnownHosts(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	var lines []string
	for _, k := range []any{&rsaKey.PublicKey, &ecKey.PublicKey} {
		pub, err := xssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, knownhosts.Line([]string{"backup.example:2222"}, pub))
	}
	other, _ := xssh.NewPublicKey(edPub)
	lines = append(lines, knownhosts.Line([]string{"other.example"}, other))
	file := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	kh, err := loadKnownHosts(file)
	if err != nil {
		t.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2222}

	got := hostKeyAlgorithms(kh, "backup.example:2222", remote)
	want := []string{xssh.KeyAlgoECDSA256, xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256}
	if !reflect.DeepEqual(got[:3], want) {
		t.Errorf("known types first: got %v, want %v first", got, want)
	}
	if !strings.Contains(strings.Join(got[3:], " "), xssh.KeyAlgoED25519) {
		t.Errorf("other types must stay allowed after the known ones: %v", got)
	}

	unknown := hostKeyAlgorithms(kh, "new.example:22", remote)
	if i, j := indexOf(unknown, xssh.KeyAlgoED25519), indexOf(unknown, xssh.KeyAlgoECDSA256); i < 0 || i > j {
		t.Errorf("unknown host: want OpenSSH's order (ed25519 before ecdsa), got %v", unknown)
	}
	if strings.Contains(strings.Join(unknown, " "), "-cert-") {
		t.Errorf("no @cert-authority line, yet certificates are asked for: %v", unknown)
	}

	// With a @cert-authority line, host certificates are asked for first.
	ca := "@cert-authority *.example " + strings.SplitN(lines[2], " ", 2)[1]
	os.WriteFile(file, []byte(ca+"\n"), 0o644)
	if kh, err = loadKnownHosts(file); err != nil {
		t.Fatal(err)
	}
	if got := hostKeyAlgorithms(kh, "new.example:22", remote); got[0] != xssh.CertAlgoED25519v01 {
		t.Errorf("with a CA: got %v, want certificates first", got)
	}
}

func TestLoadKnownHostsErrors(t *testing.T) {
	dir := t.TempDir()
	kh, err := loadKnownHosts(filepath.Join(dir, "none"))
	if err != nil || !kh.missing {
		t.Errorf("missing file: %+v, %v; want missing and no error", kh, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("host ssh-ed25519 not-base64!!\n"), 0o644)
	if _, err := loadKnownHosts(bad); err == nil || !strings.Contains(err.Error(), "cannot parse known_hosts file "+bad) || strings.Contains(err.Error(), "\n") {
		t.Errorf("broken file: %v", err)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 5}
	n, err := b.Write([]byte("abc"))
	if n != 3 || err != nil {
		t.Fatal(n, err)
	}
	n, _ = b.Write([]byte("defgh"))
	if n != 5 || b.String() != "abcde" {
		t.Errorf("n=%d buf=%q", n, b.String())
	}
}

func TestErrorMessagesAreOneLine(t *testing.T) {
	errs := []interface {
		error
		Hint() string
	}{
		&HostKeyError{Host: "b.example", Port: 22, Fingerprint: "SHA256:x", KnownHostsFile: "/k"},
		&HostKeyError{Host: "b.example", Port: 2222, Fingerprint: "SHA256:x", KnownHostsFile: "/k", Changed: true, Line: 3},
		&HostKeyError{Host: "b.example", Fingerprint: "SHA256:x", KnownHostsFile: "/k", Revoked: true},
		&AuthError{User: "borg", Host: "b.example", Port: 22},
		&UnreachableError{Host: "b.example", Port: 22, Reason: "the host name is not known to DNS", DNS: true},
		&KeyFileError{Path: "/k", Problem: "does not exist", hint: "create it"},
	}
	for _, e := range errs {
		if strings.Contains(e.Error(), "\n") || strings.Contains(e.Hint(), "\n") || e.Hint() == "" {
			t.Errorf("%T: %q / %q", e, e.Error(), e.Hint())
		}
	}
	// Port 22 is written without brackets in known_hosts, other ports with.
	if h := errs[0].Error(); !strings.Contains(h, "host key of b.example is unknown") {
		t.Errorf("port 22 name: %s", h)
	}
	if h := errs[1].Hint(); !strings.Contains(h, "ssh-keygen -R '[b.example]:2222' -f /k") {
		t.Errorf("changed hint: %s", h)
	}
}
