package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/e2e/probe"
)

// ForwardConfig is one TCP forwarder: what `tabbyctl lab forward` runs to
// let kubectl on the host reach a Kubernetes-mode lab's API server, which
// listens only inside the control plane's namespace.
type ForwardConfig struct {
	// Listen is a loopback address (port 0: any free one). The lab never
	// listens on anything but loopback in the root namespace.
	Listen string
	// Netns is the path of the namespace that connections are made from;
	// To is the address they are made to.
	Netns string
	To    string
	// Ready, if set, gets ForwardReady + the listening address (or the
	// error) and is closed.
	Ready io.WriteCloser
}

// Forward relays every connection accepted on Listen to To, dialled from
// inside Netns, until ctx is done. Bytes are copied both ways; TLS passes
// through untouched (the API server's certificate names 127.0.0.1).
func Forward(ctx context.Context, cfg ForwardConfig) error {
	ln, err := listenForward(cfg)
	if cfg.Ready != nil {
		msg := ""
		if err != nil {
			msg = strings.ReplaceAll(err.Error(), "\n", " ")
		} else {
			msg = ForwardReady + ln.Addr().String()
		}
		fmt.Fprintln(cfg.Ready, msg)
		cfg.Ready.Close()
	}
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("lab: forward: %w", err)
		}
		wg.Go(func() { relay(ctx, c, cfg) })
	}
}

func listenForward(cfg ForwardConfig) (net.Listener, error) {
	if cfg.Netns == "" || cfg.To == "" || cfg.Listen == "" {
		return nil, configErr("forward: --listen, --netns and --to are required")
	}
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, configErr("forward: --listen %q: want a loopback address and port (127.0.0.1:0)", cfg.Listen)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lab: forward: %w", err)
	}
	return ln, nil
}

// relay copies between the client and a new connection to To; when either
// side ends, both do.
func relay(ctx context.Context, client net.Conn, cfg ForwardConfig) {
	defer client.Close()
	var up net.Conn
	err := probe.InNetns(cfg.Netns, func() error {
		var err error
		// Created on this thread, so the socket lives in the namespace.
		up, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", cfg.To)
		return err
	})
	if err != nil {
		return // the client sees the connection close, as from a refused port
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other direction can finish its last bytes.
		if c, ok := dst.(*net.TCPConn); ok {
			_ = c.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, client)
	go pipe(client, up)
	select {
	case <-done:
	case <-ctx.Done():
	}
	// One side ended: give the other a moment to drain, then close both.
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
}
