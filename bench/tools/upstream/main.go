// Command upstream is the benchmark's fake OpenAI provider: a minimal
// HTTP/1.1 server that answers POST .../chat/completions with a fixed
// chat.completion (usage included) or, when the body asks for a stream, with
// chat.completion.chunk events at a fixed per-event delay.
//
// It is written for speed, not fidelity (t/fake_upstream.py is the faithful
// one): no JSON parsing, one goroutine per connection, keep-alive, and a
// response delay set at run time, so that the upstream is never the
// bottleneck of a gateway benchmark.
//
//	upstream -listen 127.0.0.1:0 [-jwks FILE]   prints "READY <port>"
//
// Control (not counted as requests):
//
//	GET /__config?delay_ms=N&events=N&event_delay_ms=N   set, and show, the
//	    delay before the response headers, the number of content events in a
//	    stream and the delay between events
//	GET /__stats      {"requests": N, "streams": N, "jwks": N}
//	GET /jwks.json    the file given with -jwks (for Portkey's JWT plugin)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

var (
	delayMs      atomic.Int64
	events       atomic.Int64
	eventDelayMs atomic.Int64
	nRequests    atomic.Int64
	nStreams     atomic.Int64
	nJWKS        atomic.Int64
	jwks         []byte
)

const chatBody = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,` +
	`"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",` +
	`"content":"This is a fake reply.","refusal":null},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,` +
	`"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},` +
	`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,` +
	`"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},` +
	`"service_tier":"default","system_fingerprint":"fp_bench"}`

const chunkHead = `{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,` +
	`"model":"gpt-4o-mini","system_fingerprint":"fp_bench","choices":[`

var (
	evRole    = []byte("data: " + chunkHead + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	evContent = []byte("data: " + chunkHead + `{"index":0,"delta":{"content":"tok "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	evFinish  = []byte("data: " + chunkHead + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n")
	evUsage   = []byte("data: " + chunkHead + `],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}` + "\n\n")
	evDone    = []byte("data: [DONE]\n\n")

	modelsBody = []byte(`{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":"system"}]}`)
	notFound   = []byte(`{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":"unknown_url"}}`)

	streamTrue  = [][]byte{[]byte(`"stream":true`), []byte(`"stream": true`)}
	usageTrue   = [][]byte{[]byte(`"include_usage":true`), []byte(`"include_usage": true`)}
	errBadInput = errors.New("bad request")
)

func containsAny(b []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

type request struct {
	method, target string
	close          bool
	body           []byte
}

func asciiEqualFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// readRequest reads one request; body is reused between requests.
func readRequest(br *bufio.Reader, bw *bufio.Writer, body []byte) (*request, []byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, body, err
	}
	line = trimLine(line)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		return nil, body, errBadInput
	}
	req := &request{method: string(line[:sp1]), target: string(line[sp1+1 : sp2])}
	req.close = string(line[sp2+1:]) == "HTTP/1.0"
	clen, chunked, expect := -1, false, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return nil, body, err
		}
		h = trimLine(h)
		if len(h) == 0 {
			break
		}
		c := bytes.IndexByte(h, ':')
		if c <= 0 {
			continue
		}
		name, val := h[:c], bytes.TrimSpace(h[c+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.Atoi(string(val))
			if err != nil || n < 0 {
				return nil, body, errBadInput
			}
			clen = n
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case asciiEqualFold(name, "connection"):
			v := bytes.ToLower(val)
			if bytes.Contains(v, []byte("close")) {
				req.close = true
			} else if bytes.Contains(v, []byte("keep-alive")) {
				req.close = false
			}
		case asciiEqualFold(name, "expect"):
			expect = asciiEqualFold(val, "100-continue")
		}
	}
	if expect {
		bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		bw.Flush()
	}
	body = body[:0]
	switch {
	case chunked:
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return nil, body, err
			}
			l = trimLine(l)
			if i := bytes.IndexByte(l, ';'); i >= 0 {
				l = l[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
			if err != nil || n < 0 || n > 64<<20 {
				return nil, body, errBadInput
			}
			if n == 0 {
				for { // trailers
					t, err := br.ReadSlice('\n')
					if err != nil {
						return nil, body, err
					}
					if len(trimLine(t)) == 0 {
						break
					}
				}
				break
			}
			start := len(body)
			body = append(body, make([]byte, n)...)
			if _, err := io.ReadFull(br, body[start:]); err != nil {
				return nil, body, err
			}
			if _, err := br.Discard(2); err != nil {
				return nil, body, err
			}
		}
	case clen > 0:
		if cap(body) < clen {
			body = make([]byte, clen)
		}
		body = body[:clen]
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, body, err
		}
	}
	req.body = body
	return req, body, nil
}

func writeFixed(bw *bufio.Writer, status string, ctype string, b []byte, close bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(status)
	bw.WriteString("\r\nServer: bench-upstream\r\nContent-Type: ")
	bw.WriteString(ctype)
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(b)))
	if close {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.Write(b)
}

func writeChunk(bw *bufio.Writer, b []byte) error {
	fmt.Fprintf(bw, "%x\r\n", len(b))
	bw.Write(b)
	bw.WriteString("\r\n")
	return bw.Flush()
}

func stream(bw *bufio.Writer, withUsage bool, close bool) error {
	bw.WriteString("HTTP/1.1 200 OK\r\nServer: bench-upstream\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n" +
		"Transfer-Encoding: chunked\r\n")
	if close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return err
	}
	gap := time.Duration(eventDelayMs.Load()) * time.Millisecond
	n := int(events.Load())
	evs := make([][]byte, 0, n+4)
	evs = append(evs, evRole)
	for i := 0; i < n; i++ {
		evs = append(evs, evContent)
	}
	evs = append(evs, evFinish)
	if withUsage {
		evs = append(evs, evUsage)
	}
	evs = append(evs, evDone)
	for i, ev := range evs {
		if i > 0 && gap > 0 {
			time.Sleep(gap)
		}
		if err := writeChunk(bw, ev); err != nil {
			return err
		}
	}
	bw.WriteString("0\r\n\r\n")
	return bw.Flush()
}

func control(bw *bufio.Writer, target string, close bool) {
	u, err := url.Parse(target)
	if err != nil {
		writeFixed(bw, "400 Bad Request", "application/json", notFound, close)
		return
	}
	switch u.Path {
	case "/__config":
		q := u.Query()
		for name, v := range map[string]*atomic.Int64{"delay_ms": &delayMs, "events": &events,
			"event_delay_ms": &eventDelayMs} {
			if s := q.Get(name); s != "" {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
					v.Store(n)
				}
			}
		}
		writeFixed(bw, "200 OK", "application/json", []byte(fmt.Sprintf(
			`{"delay_ms":%d,"events":%d,"event_delay_ms":%d}`, delayMs.Load(), events.Load(),
			eventDelayMs.Load())), close)
	case "/__stats":
		writeFixed(bw, "200 OK", "application/json", []byte(fmt.Sprintf(
			`{"requests":%d,"streams":%d,"jwks":%d}`, nRequests.Load(), nStreams.Load(),
			nJWKS.Load())), close)
	case "/jwks.json":
		nJWKS.Add(1)
		writeFixed(bw, "200 OK", "application/json", jwks, close)
	default:
		writeFixed(bw, "404 Not Found", "application/json", notFound, close)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 16<<10)
	var body []byte
	for {
		req, b, err := readRequest(br, bw, body)
		body = b
		if err != nil {
			if err == errBadInput {
				writeFixed(bw, "400 Bad Request", "application/json", notFound, true)
				bw.Flush()
			}
			return
		}
		path := req.target
		if i := bytes.IndexByte([]byte(path), '?'); i >= 0 {
			path = path[:i]
		}
		switch {
		case len(path) > 3 && path[:3] == "/__" || path == "/jwks.json":
			control(bw, req.target, req.close)
		case req.method == "POST" && hasSuffix(path, "/chat/completions"):
			nRequests.Add(1)
			if d := delayMs.Load(); d > 0 {
				time.Sleep(time.Duration(d) * time.Millisecond)
			}
			if containsAny(req.body, streamTrue) {
				nStreams.Add(1)
				if err := stream(bw, containsAny(req.body, usageTrue), req.close); err != nil {
					return
				}
			} else {
				writeFixed(bw, "200 OK", "application/json", []byte(chatBody), req.close)
			}
		case req.method == "GET" && hasSuffix(path, "/models"):
			writeFixed(bw, "200 OK", "application/json", modelsBody, req.close)
		default:
			writeFixed(bw, "404 Not Found", "application/json", notFound, req.close)
		}
		if br.Buffered() == 0 || req.close {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if req.close {
			return
		}
	}
}

func hasSuffix(s, suf string) bool {
	return len(s) >= len(suf) && s[len(s)-len(suf):] == suf
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	jwksFile := flag.String("jwks", "", "file served at /jwks.json")
	flag.Parse()
	events.Store(20)
	if *jwksFile != "" {
		b, err := os.ReadFile(*jwksFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "upstream:", err)
			os.Exit(1)
		}
		jwks = b
	} else {
		jwks = []byte(`{"keys":[]}`)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	fmt.Printf("READY %d\n", ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
