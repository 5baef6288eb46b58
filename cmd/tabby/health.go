package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const defaultHealthAddr = "127.0.0.1:9099"

// healthCommand is `tabby health`: it asks a running agent's /healthz (or
// /readyz with --ready) and succeeds iff the answer is 200. It is the
// DaemonSet's exec probe; --addr defaults to $TABBY_HEALTH_ADDR, the
// ConfigMap key the agent's --health-addr is set from, so the probe follows
// the agent when that changes. A listen address on all interfaces (":9099",
// "0.0.0.0:9099") is asked on loopback.
func healthCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tabby health", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "", "the agent's --health-addr (default $TABBY_HEALTH_ADDR, else "+defaultHealthAddr+")")
	ready := fs.Bool("ready", false, "ask /readyz (ready: first sync done) instead of /healthz (alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tabby health [--addr HOST:PORT] [--ready] [--timeout D]\n\n"+
			"Exits 0 iff the agent's /healthz (with --ready: /readyz) answers 200.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return badInput("health: %v", err)
	}
	if fs.NArg() > 0 {
		return badInput("health: unexpected argument %q", fs.Arg(0))
	}
	if *addr == "" {
		*addr = os.Getenv(envName("health-addr"))
	}
	if *addr == "" {
		*addr = defaultHealthAddr
	}
	if *timeout <= 0 {
		return badInput("health: --timeout %v: must be positive", *timeout)
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return badInput("health: --addr %q: %v", *addr, err)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url := "http://" + net.JoinHostPort(host, port) + path
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return badInput("health: %v", err)
	}
	// No proxy: a probe asks the agent next to it, whatever HTTP_PROXY the
	// pod has.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %d: %s", url, resp.StatusCode, msg)
	}
	fmt.Fprintf(stdout, "%s: %s\n", path, msg)
	return nil
}
