package state

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

type hits struct {
	mu    sync.Mutex
	paths []string
	body  []string
}

func (h *hits) add(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paths = append(h.paths, r.Method+" "+r.URL.RequestURI())
	h.body = append(h.body, string(b))
}

func (h *hits) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string{}, h.paths...)
}

func TestPingsFollowTheHealthchecksConvention(t *testing.T) {
	var h hits
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.add(r) }))
	defer srv.Close()
	p := &Pinger{URL: srv.URL + "/ping/abc-123/", Backoff: time.Millisecond}
	ctx := context.Background()
	p.Start(ctx, "backup started")
	p.Success(ctx, "backup ok")
	p.Fail(ctx, "backup failed")
	q := &Pinger{URL: srv.URL + "/ping/key/slug?create=1"}
	q.Fail(ctx, "x")
	want := []string{"POST /ping/abc-123/start", "POST /ping/abc-123/", "POST /ping/abc-123/fail", "POST /ping/key/slug/fail?create=1"}
	if got := h.list(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("pings:\n got %q\nwant %q", got, want)
	}
	if h.body[0] != "backup started" || h.body[2] != "backup failed" {
		t.Fatalf("bodies: %q", h.body)
	}
}

func TestPingRetriesThenSucceeds(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p := &Pinger{URL: srv.URL, Backoff: 10 * time.Millisecond}
	if err := p.Success(context.Background(), ""); err != nil || n.Load() != 3 {
		t.Fatalf("want success on the third attempt, got %v after %d", err, n.Load())
	}
}

// A server that never answers costs Attempts x Timeout at most, and the failure is logged
// without the URL's secret path.
func TestPingTimesOutAndLogsWithoutTheSecretPath(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	var logBuf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logBuf)
	p := &Pinger{URL: srv.URL + "/secret-uuid", Timeout: 100 * time.Millisecond, Attempts: 2, Backoff: 10 * time.Millisecond, Log: log}
	start := time.Now()
	err := p.Fail(context.Background(), "")
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("want a timeout error soon, got %v after %s", err, time.Since(start))
	}
	if !strings.Contains(logBuf.String(), "failed after 2 attempt(s)") || strings.Contains(logBuf.String(), "secret-uuid") {
		t.Fatalf("log: %s", logBuf.String())
	}
}

func TestPingUnreachableAndBadURLNeverPanic(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := srv.URL
	srv.Close() // nothing listens there now
	if err := (&Pinger{URL: url, Backoff: time.Millisecond}).Start(context.Background(), ""); err == nil {
		t.Fatal("want an error from a closed port")
	}
	if err := (&Pinger{URL: "ftp://x/y"}).Start(context.Background(), ""); err == nil {
		t.Fatal("want an error for a non-http URL")
	}
	var nilPinger *Pinger
	if err := nilPinger.Start(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if err := (&Pinger{}).Success(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
}

// A cancelled run still sends its fail ping, once.
func TestFailPingOfACancelledRunIsSent(t *testing.T) {
	var h hits
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.add(r) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&Pinger{URL: srv.URL + "/u"}).Fail(ctx, "interrupted"); err != nil {
		t.Fatal(err)
	}
	if got := h.list(); len(got) != 1 || got[0] != "POST /u/fail" {
		t.Fatalf("pings: %q", got)
	}
}

// A run stopped by a signal while a ping waits to retry does not sit out the wait.
func TestPingRetryWaitEndsWhenTheRunIsCancelled(t *testing.T) {
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			// The run is stopped once the first attempt has its answer, however slow the machine.
			defer time.AfterFunc(50*time.Millisecond, cancel)
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p := &Pinger{URL: srv.URL, Backoff: 30 * time.Second, Attempts: 3}
	start := time.Now()
	if err := p.Success(ctx, ""); err == nil {
		t.Fatal("a ping the server refused must report failure")
	}
	if took := time.Since(start); took > 5*time.Second || n.Load() != 1 {
		t.Fatalf("the retry wait outlived the run: %s, %d attempts", took, n.Load())
	}
}
