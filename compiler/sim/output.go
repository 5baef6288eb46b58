package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// jsonLine is one line of the matrix format (../shared/formats/matrix.md).
type jsonLine struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  bool   `json:"allowed"`
}

// WriteJSON prints one JSON object per probe, in matrix order.
func WriteJSON(w io.Writer, m *Matrix) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, r := range m.Results {
		if err := enc.Encode(jsonLine{r.From, r.To, r.Port, r.Protocol.String(), r.Allowed}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteTable prints one grid per port/protocol: rows are sources, columns
// destinations; "✓" allowed, "✗" denied, "·" not probed (same pod, or the
// destination does not declare that port).
func WriteTable(w io.Writer, m *Matrix) error {
	type portKey struct {
		port  uint16
		proto string
	}
	cells := map[portKey]map[[2]string]bool{}
	for _, r := range m.Results {
		k := portKey{r.Port, r.Protocol.String()}
		if cells[k] == nil {
			cells[k] = map[[2]string]bool{}
		}
		cells[k][[2]string{r.From, r.To}] = r.Allowed
	}
	keys := make([]portKey, 0, len(cells))
	for k := range cells {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].port != keys[j].port {
			return keys[i].port < keys[j].port
		}
		return keys[i].proto < keys[j].proto
	})
	bw := bufio.NewWriter(w)
	if len(keys) == 0 {
		fmt.Fprintln(bw, "no probes: no pod declares a containerPort")
		return bw.Flush()
	}
	labels := make([]string, len(m.Pods))
	width := 0
	for j, p := range m.Pods {
		labels[j] = fmt.Sprintf("%d %s", j+1, p)
		width = max(width, len(labels[j]))
	}
	for i, k := range keys {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		title := fmt.Sprintf("%d/%s", k.port, k.proto)
		allowed, total := 0, 0
		for _, ok := range cells[k] {
			total++
			if ok {
				allowed++
			}
		}
		fmt.Fprintf(bw, "%s  (%d of %d allowed; rows: from, columns: to; ✓ allowed, ✗ denied, · not probed)\n", title, allowed, total)
		// Columns are numbered so the grid stays narrow; the legend names them.
		fmt.Fprintf(bw, "%-*s", width+2, "")
		for j := range m.Pods {
			fmt.Fprintf(bw, "%3d", j+1)
		}
		fmt.Fprintln(bw)
		for j, from := range m.Pods {
			fmt.Fprintf(bw, "%-*s", width+2, labels[j])
			for _, to := range m.Pods {
				mark := "·"
				if ok, probed := cells[k][[2]string{from, to}]; probed {
					mark = "✗"
					if ok {
						mark = "✓"
					}
				}
				fmt.Fprintf(bw, "%3s", mark)
			}
			fmt.Fprintln(bw)
		}
	}
	return bw.Flush()
}
