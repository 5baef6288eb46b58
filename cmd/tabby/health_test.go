package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthCommand runs `tabby health` against a test server that answers
// like an agent before its first sync.
func TestHealthCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			fmt.Fprintln(w, "loop alive")
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "first sync not done")
		}
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name   string
		args   []string
		env    string // TABBY_HEALTH_ADDR
		code   int
		stdout string
		stderr string
	}{
		{name: "alive", args: []string{"--addr", addr}, code: 0, stdout: "/healthz: loop alive"},
		{name: "not ready", args: []string{"--addr", addr, "--ready"}, code: 1, stderr: "/readyz answered 503: first sync not done"},
		{name: "address from TABBY_HEALTH_ADDR", env: addr, code: 0, stdout: "/healthz: loop alive"},
		{name: "--addr over TABBY_HEALTH_ADDR", args: []string{"--addr", addr}, env: refused, code: 0},
		{name: "listen on all addresses: asked on loopback", args: []string{"--addr", "0.0.0.0:" + port}, code: 0},
		{name: "listen without a host: asked on loopback", args: []string{"--addr", ":" + port}, code: 0},
		{name: "nothing listening", args: []string{"--addr", refused}, code: 1, stderr: "connection refused"},
		{name: "default address", env: "", code: 1, stderr: "127.0.0.1:9099"}, // nothing listens there in tests
		{name: "bad address", args: []string{"--addr", "nope"}, code: 2, stderr: `--addr "nope"`},
		{name: "bad timeout", args: []string{"--timeout", "0s"}, code: 2, stderr: "--timeout"},
		{name: "extra argument", args: []string{"x"}, code: 2, stderr: `unexpected argument "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "default address" {
				if c, err := net.DialTimeout("tcp", defaultHealthAddr, time.Second); err == nil {
					c.Close()
					t.Skip("something listens on " + defaultHealthAddr)
				}
			}
			clearAgentEnv(t)
			if tc.env != "" {
				t.Setenv("TABBY_HEALTH_ADDR", tc.env)
			}
			// A proxy from the environment must not be used for the probe.
			t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"health"}, tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		// The server never answers: the probe gives up after --timeout.
		hang := make(chan struct{})
		hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
		defer hangSrv.Close()
		defer close(hang) // before Close, which waits for the handler
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := run(context.Background(), []string{"health", "--addr", hangSrv.Listener.Addr().String(), "--timeout", "200ms"}, &stdout, &stderr)
		if took := time.Since(start); code != 1 || took > 2*time.Second || !strings.Contains(stderr.String(), "deadline exceeded") {
			t.Fatalf("exit %d after %v: %s", code, took, stderr.String())
		}
	})
}
