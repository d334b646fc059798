package state

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Pinger pings a health-check URL in the healthchecks.io convention: URL/start when a job
// starts, URL when it succeeds, URL/fail when it fails. A ping that cannot be delivered is
// logged and never fails the job: monitoring notices a missing ping by itself.
type Pinger struct {
	URL      string
	Timeout  time.Duration // per attempt; default 10 s
	Attempts int           // default 3
	Backoff  time.Duration // before the second attempt, doubling; default 2 s
	Client   *http.Client
	Log      logrus.FieldLogger
}

// maxPingBody is what healthchecks.io keeps of a ping's body.
const maxPingBody = 10 << 10

// Start says the job started; body is shown in the check's log.
func (p *Pinger) Start(ctx context.Context, body string) error { return p.Ping(ctx, "start", body) }

// Success says the job did its work.
func (p *Pinger) Success(ctx context.Context, body string) error { return p.Ping(ctx, "", body) }

// Fail says the job failed.
func (p *Pinger) Fail(ctx context.Context, body string) error { return p.Ping(ctx, "fail", body) }

// Ping posts body to URL/suffix (URL itself for suffix ""). It returns the last error after
// logging it; callers may ignore it. A nil Pinger or an empty URL does nothing.
func (p *Pinger) Ping(ctx context.Context, suffix, body string) error {
	if p == nil || p.URL == "" {
		return nil
	}
	target, host, err := pingURL(p.URL, suffix)
	if err != nil {
		p.log().Warnf("health-check ping not sent: %v", err)
		return err
	}
	attempts, timeout, backoff := p.Attempts, p.Timeout, p.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if backoff <= 0 {
		backoff = 2 * time.Second
	}
	// The fail ping of a cancelled run matters most, but the service manager's stop timeout is
	// running: one short try, detached from the cancelled context.
	if ctx.Err() != nil {
		attempts, timeout = 1, min(timeout, 5*time.Second)
	}
	run := ctx
	ctx = context.WithoutCancel(ctx)
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	if len(body) > maxPingBody {
		body = body[:maxPingBody]
	}
	what := "ping"
	if suffix != "" {
		what = suffix + " ping"
	}
	for i := 1; ; i++ {
		err = postOnce(ctx, client, target, body, timeout)
		if err == nil {
			p.log().Debugf("health-check %s sent to %s", what, host)
			return nil
		}
		if i >= attempts || run.Err() != nil {
			attempts = i
			break
		}
		// A signal during the wait ends it: the run is stopping and systemd's stop timeout runs.
		t := time.NewTimer(backoff)
		select {
		case <-run.Done():
			t.Stop()
			attempts = i
		case <-t.C:
		}
		if run.Err() != nil {
			break
		}
		backoff *= 2
	}
	// The URL's path is the check's secret: name the host only.
	p.log().Warnf("health-check %s to %s failed after %d attempt(s): %v; the job goes on", what, host, attempts, err)
	return err
}

func postOnce(ctx context.Context, client *http.Client, target, body string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "cht-backup")
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL, secret path included.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no answer within %s", timeout)
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("server answered %s", resp.Status)
	}
	return nil
}

// pingURL appends /suffix to the URL's path, keeping its query (e.g. ?create=1).
func pingURL(raw, suffix string) (target, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", fmt.Errorf("health-check URL is not an http(s) URL; give --healthcheck-url as https://host/path")
	}
	if suffix != "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + suffix
		u.RawPath = ""
	}
	return u.String(), u.Host, nil
}

func (p *Pinger) log() logrus.FieldLogger {
	if p.Log != nil {
		return p.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
