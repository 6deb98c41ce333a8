// Command storecount is a TCP relay in front of the MongoDB-compatible store
// that counts the commands clients send through it (MongoDB wire protocol:
// OP_MSG and legacy OP_QUERY), by command name. The benchmark points
// mod_aiproxy at it for a short run to measure store round trips per request.
//
//	storecount -to 127.0.0.1:STORE   prints "READY <relay port> <control port>"
//
// Control: GET /counts (JSON: {"total": N, "commands": {"find": N, ...},
// "connections": N}); GET /reset zeroes the counts.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

type counter struct {
	mu    sync.Mutex
	cmds  map[string]int64
	total int64
	conns int64
}

func (c *counter) add(cmd string) {
	c.mu.Lock()
	c.cmds[cmd]++
	c.total++
	c.mu.Unlock()
}

// firstKey returns the first element name of a BSON document.
func firstKey(doc []byte) string {
	if len(doc) < 6 {
		return "?"
	}
	k := doc[5:]
	for i, b := range k {
		if b == 0 {
			return string(k[:i])
		}
	}
	return "?"
}

func commandOf(op int32, body []byte) string {
	switch op {
	case 2013: // OP_MSG: flagBits, then sections; kind 0 holds the command
		p := body[4:]
		for len(p) > 0 {
			kind := p[0]
			p = p[1:]
			if len(p) < 4 {
				break
			}
			n := int(binary.LittleEndian.Uint32(p))
			if n > len(p) || n < 5 {
				break
			}
			if kind == 0 {
				return firstKey(p[:n])
			}
			p = p[n:]
		}
		return "?"
	case 2004: // OP_QUERY: flags, fullCollectionName, skip, return, query
		p := body[4:]
		for i, b := range p {
			if b == 0 {
				p = p[i+1:]
				break
			}
		}
		if len(p) < 8 {
			return "?"
		}
		return firstKey(p[8:])
	case 2012:
		return "compressed"
	}
	return fmt.Sprintf("op%d", op)
}

func relay(client net.Conn, to string, cnt *counter) {
	defer client.Close()
	server, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer server.Close()
	cnt.mu.Lock()
	cnt.conns++
	cnt.mu.Unlock()
	for _, c := range []net.Conn{client, server} {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
	}
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	br := bufio.NewReaderSize(client, 64<<10)
	hdr := make([]byte, 16)
	var body []byte
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr))
		op := int32(binary.LittleEndian.Uint32(hdr[12:]))
		if n < 16 || n > 48<<20 {
			return
		}
		if cap(body) < n-16 {
			body = make([]byte, n-16)
		}
		body = body[:n-16]
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if len(body) >= 4 {
			cnt.add(commandOf(op, body))
		}
		if _, err := server.Write(append(hdr[:16:16], body...)); err != nil {
			return
		}
	}
}

func main() {
	to := flag.String("to", "", "store address host:port")
	listen := flag.String("listen", "127.0.0.1:0", "relay address")
	ctl := flag.String("control", "127.0.0.1:0", "control HTTP address")
	flag.Parse()
	if *to == "" {
		fmt.Fprintln(os.Stderr, "storecount: -to is required")
		os.Exit(2)
	}
	cnt := &counter{cmds: map[string]int64{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storecount:", err)
		os.Exit(1)
	}
	cl, err := net.Listen("tcp", *ctl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storecount:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		cnt.mu.Lock()
		b, _ := json.Marshal(map[string]interface{}{"total": cnt.total, "commands": cnt.cmds,
			"connections": cnt.conns})
		cnt.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		cnt.mu.Lock()
		cnt.cmds = map[string]int64{}
		cnt.total = 0
		cnt.mu.Unlock()
		w.Write([]byte("{}"))
	})
	go http.Serve(cl, mux)
	fmt.Printf("READY %d %d\n", ln.Addr().(*net.TCPAddr).Port, cl.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go relay(c, *to, cnt)
	}
}
