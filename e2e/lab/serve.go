package lab

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/e2e/probe"
)

// ServeReady is the line a pod server writes on its readiness pipe once
// every socket is open. Anything else written there is an error message.
const ServeReady = "ready"

// ServeConfig is one pod server: what `tabbyctl lab serve` runs.
type ServeConfig struct {
	Netns  string   // path of the pod's network namespace
	Banner string   // "ns/pod": proves to a probe which pod answered
	Ports  []string // "80/TCP", "53/UDP", "9000/SCTP"
	// Ready, if set, gets ServeReady (or the error) and is closed.
	Ready io.WriteCloser
}

// ParsePort reads "80/TCP" (protocol TCP, UDP or SCTP, any case; TCP
// when omitted).
func ParsePort(s string) (probe.Port, error) {
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return probe.Port{}, configErr("port %q: want 1-65535[/TCP|UDP|SCTP]", s)
	}
	if proto == "" {
		proto = "TCP"
	}
	p, err := probe.ParseProtocol(proto)
	if err != nil {
		return probe.Port{}, configErr("port %q: %w", s, err)
	}
	return probe.Port{Number: uint16(n), Protocol: p}, nil
}

// Serve answers probes inside the namespace until ctx is done.
func Serve(ctx context.Context, cfg ServeConfig) error {
	srv, err := startServe(ctx, cfg)
	if cfg.Ready != nil {
		msg := ServeReady
		if err != nil {
			msg = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Fprintln(cfg.Ready, msg)
		cfg.Ready.Close()
	}
	if err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close()
}

func startServe(ctx context.Context, cfg ServeConfig) (*probe.Server, error) {
	if cfg.Netns == "" || cfg.Banner == "" || len(cfg.Ports) == 0 {
		return nil, configErr("serve: --netns, --banner and at least one --port are required")
	}
	var ports []probe.Port
	for _, s := range cfg.Ports {
		p, err := ParsePort(s)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	srv, err := probe.ServeIn(ctx, cfg.Netns, ports, probe.WithBanner(cfg.Banner))
	if err != nil {
		return nil, fmt.Errorf("lab: serve in %s: %w", cfg.Netns, err)
	}
	return srv, nil
}
