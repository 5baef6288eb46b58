// Package kerneltest is test support for tests that touch the kernel: a
// throwaway network namespace that is always deleted, nft run inside it, and
// the normalisation that makes an nft listing comparable with a rendering.
// Kernel tests never touch the root namespace's rules, routes or links.
//
// Imports: the standard library only. Used from _test.go files only.
package kerneltest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// NewNetns creates a network namespace named prefix-<random>, deleted when
// the test ends (also on failure), and returns its name; its path is
// /run/netns/<name>. The test is skipped when not root; missing ip or nft
// fail it, since CI installs both.
func NewNetns(t testing.TB, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// Nft runs `nft args...` inside namespace ns with stdin, returning stdout.
// Production code never execs nft; tests use it as an independent reader.
func Nft(ns string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// NormaliseElements sorts the elements of every `elements = { … }` block and
// puts them on one line, since the kernel lists hash sets in its own order.
func NormaliseElements(s string) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		start := strings.Index(l, "elements = { ")
		if start < 0 {
			out = append(out, l)
			continue
		}
		body := l[start+len("elements = { "):]
		for !strings.HasSuffix(body, " }") && i+1 < len(lines) {
			i++
			body += " " + strings.TrimSpace(lines[i])
		}
		items := strings.Split(strings.TrimSuffix(body, " }"), ",")
		for j := range items {
			items[j] = strings.TrimSpace(items[j])
		}
		sort.Strings(items)
		out = append(out, l[:start]+"elements = { "+strings.Join(items, ", ")+" }")
	}
	return strings.Join(out, "\n")
}
