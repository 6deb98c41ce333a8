// Command ssebench measures streamed chat completions through one target:
// time to the first event and the gaps between events, as the client sees
// them. Prints one JSON object.
//
//	ssebench -url URL -body FILE [-H 'Name: value']... [-n 50] [-c 1]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

type result struct {
	ttfb   time.Duration
	total  time.Duration
	gaps   []time.Duration
	events int
	err    string
}

func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(p/100*float64(len(xs)-1) + 0.5)
	return xs[i]
}

func summary(ds []time.Duration) map[string]float64 {
	xs := make([]float64, len(ds))
	sum := 0.0
	for i, d := range ds {
		xs[i] = float64(d.Microseconds()) / 1000
		sum += xs[i]
	}
	sort.Float64s(xs)
	out := map[string]float64{"n": float64(len(xs))}
	if len(xs) > 0 {
		out["mean"] = sum / float64(len(xs))
		out["p50"] = pct(xs, 50)
		out["p99"] = pct(xs, 99)
		out["max"] = xs[len(xs)-1]
	}
	return out
}

func one(client *http.Client, url string, hs headers, body []byte) result {
	var r result
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for _, h := range hs {
		if i := strings.IndexByte(h, ':'); i > 0 {
			req.Header.Set(strings.TrimSpace(h[:i]), strings.TrimSpace(h[i+1:]))
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		r.err = fmt.Sprintf("status %d: %s", resp.StatusCode, b)
		return r
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var last time.Time
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 5 && bytes.HasPrefix(line, []byte("data:")) {
			now := time.Now()
			if r.events == 0 {
				r.ttfb = now.Sub(start)
			} else {
				r.gaps = append(r.gaps, now.Sub(last))
			}
			last = now
			r.events++
			if bytes.Contains(line, []byte("[DONE]")) {
				done = true
			}
		}
		if err != nil {
			if err != io.EOF {
				r.err = err.Error()
			}
			break
		}
	}
	r.total = time.Since(start)
	if !done && r.err == "" {
		r.err = "stream ended without [DONE]"
	}
	return r
}

func main() {
	url := flag.String("url", "", "target URL")
	bodyFile := flag.String("body", "", "request body file")
	n := flag.Int("n", 50, "streams")
	c := flag.Int("c", 1, "concurrent streams")
	timeout := flag.Duration("timeout", 60*time.Second, "per stream")
	var hs headers
	flag.Var(&hs, "H", "request header (repeatable)")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssebench:", err)
		os.Exit(2)
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: *c, DisableCompression: true}}
	// One warm-up stream per connection, not counted.
	var wg sync.WaitGroup
	for i := 0; i < *c; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); one(client, *url, hs, body) }()
	}
	wg.Wait()
	jobs := make(chan int)
	results := make(chan result, *n)
	for i := 0; i < *c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				results <- one(client, *url, hs, body)
			}
		}()
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(results)
	elapsed := time.Since(start)
	var ttfb, total, gaps []time.Duration
	errs := map[string]int{}
	nerr, events := 0, 0
	for r := range results {
		if r.err != "" {
			nerr++
			errs[r.err]++
			continue
		}
		ttfb = append(ttfb, r.ttfb)
		total = append(total, r.total)
		gaps = append(gaps, r.gaps...)
		events = r.events
	}
	out := map[string]interface{}{
		"streams": *n, "concurrency": *c, "errors": nerr, "events_per_stream": events,
		"ttfb_ms": summary(ttfb), "gap_ms": summary(gaps), "total_ms": summary(total),
		"seconds": elapsed.Seconds(),
	}
	if nerr > 0 {
		out["error_samples"] = errs
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
