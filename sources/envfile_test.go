package sources

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"plain", "A=1\nB=two\n", map[string]string{"A": "1", "B": "two"}},
		{"comments and blank lines", "# c\n\n   # indented\nA=1\n\n", map[string]string{"A": "1"}},
		{"export prefix", "export A=1\nexport   B=2\n", map[string]string{"A": "1", "B": "2"}},
		{"whitespace trimmed", "  A =  spaced value  \n", map[string]string{"A": "spaced value"}},
		{"inline comment after space", "A=value # comment\nB=value\t# tab: compose keeps it\n", map[string]string{"A": "value", "B": "value\t# tab: compose keeps it"}},
		{"hash inside word kept", "PW=ab#cd\nURL=http://x/#frag\n", map[string]string{"PW": "ab#cd", "URL": "http://x/#frag"}},
		{"single quotes literal", `A='x\ny $HOME # not a comment'`, map[string]string{"A": `x\ny $HOME # not a comment`}},
		{"double quote escapes", `A="l1\nl2 \"q\" back\\slash \t tab \z"`, map[string]string{"A": "l1\nl2 \"q\" back\\slash \t tab \\z"}},
		{"comment after quotes", `A="v" # c` + "\nB='w'   #c", map[string]string{"A": "v", "B": "w"}},
		{"empty values", "A=\nB=''\nC=\"\"\n", map[string]string{"A": "", "B": "", "C": ""}},
		{"key alone ignored", "LONELY\nA=1\n", map[string]string{"A": "1"}},
		{"equals in value", "A=b=c==\n", map[string]string{"A": "b=c=="}},
		{"multi-line double quotes", "A=\"one\ntwo\"\nB=3\n", map[string]string{"A": "one\ntwo", "B": "3"}},
		{"multi-line single quotes", "A='one\n#two'\n", map[string]string{"A": "one\n#two"}},
		{"crlf", "A=1\r\nB='2'\r\n", map[string]string{"A": "1", "B": "2"}},
		{"bom", "\xef\xbb\xbfA=1\n", map[string]string{"A": "1"}},
		{"last wins", "A=1\nA=2\n", map[string]string{"A": "2"}},
		// compose reads text after a closing quote as a line of its own, here a bare name: ignored
		{"text after closing quote", "PW=\"x\"rest\n", map[string]string{"PW": "x"}},
		// interpolation as compose does it: earlier lines are known, outside variables are unset
		{"interpolation from earlier lines", "DIR=/srv/cht\nDATA=${DIR}/couchdb\nQ=\"$DIR/q\"\nLIT='$DIR'\n",
			map[string]string{"DIR": "/srv/cht", "DATA": "/srv/cht/couchdb", "Q": "/srv/cht/q", "LIT": "$DIR"}},
		{"outside variables are unset", "A=${NOT_IN_FILE:-dflt}\nB=x${HOME}y\n", map[string]string{"A": "dflt", "B": "xy"}},
		{"dollar escapes", "A=$$keep\nB=\"\\$keep\"\n", map[string]string{"A": "$keep", "B": "$keep"}},
		{"no trailing newline", "A=1", map[string]string{"A": "1"}},
		{"cht install env", "CHT_COMPOSE_PROJECT_NAME=cht\nCOUCHDB_DATA=/home/ubuntu/cht/couchdb\nCOUCHDB_PASSWORD=p@ss w0rd!\n",
			map[string]string{"CHT_COMPOSE_PROJECT_NAME": "cht", "COUCHDB_DATA": "/home/ubuntu/cht/couchdb", "COUCHDB_PASSWORD": "p@ss w0rd!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnv([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseEnv: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseEnvFileErrorsNameFileAndLineNeverValue(t *testing.T) {
	const secret = "Sup3rSecretValue"
	tests := []struct {
		name, in string
		line     string
	}{
		{"unterminated double quote", "A=1\nPW=\"" + secret + "\n", "line 2"},
		{"unterminated single quote", "PW='" + secret, "line 1"},
		{"unterminated after a multi-line value", "A=\"one\ntwo\"\nB=1\nPW='" + secret + "\nmore\n", "line 4"},
		{"required variable unset", "A=1\n\nPW=${" + secret + ":?set it}\n", "line 3"},
		{"bad character in key", "A=1\nB%=" + secret + "\n", "line 2"},
		{"bad key", "A=1\nBAD KEY=" + secret + "\n", "line 2"},
		{"garbage line", secret + " " + secret + "\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), ".env")
			if err := os.WriteFile(p, []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ParseEnvFile(p)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, p) || !strings.Contains(msg, tt.line+":") {
				t.Errorf("error %q should name %s and %s", msg, p, tt.line)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "Sup3r") {
				t.Errorf("error leaks the value: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

func TestParseEnvFileMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.env")
	_, err := ParseEnvFile(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an error naming %s, got %v", p, err)
	}
}
