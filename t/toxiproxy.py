"""Toxiproxy (built by tools/setup.sh --test into .tools/bin) between the
gateway and the store: a TCP proxy whose faults ("toxics") are set through
its HTTP API while traffic flows.

Streams, as Toxiproxy names them: "upstream" is what the gateway sends the
store (commands), "downstream" what the store sends back (replies). A toxic
on the downstream acts after the store received, and so applied, a write."""
import os
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from loopback import free_port, wait_port  # noqa: E402

SERVER = os.path.join(ROOT, ".tools", "bin", "toxiproxy-server")


class ProxiedStore:
    """The tests' store reached through a proxy: the gateway gets .uri (the
    store's own URI with the proxy's address), the tests read the store
    directly with .client()."""

    def __init__(self, store, uri):
        self.store = store
        self.uri = uri

    def client(self):
        return self.store.client()


def store_address(uri):
    """(host:port of a single-host mongodb:// URI, a function giving the
    same URI at another port). A seed list or mongodb+srv:// would let the
    driver find the servers itself, around the proxy: None then."""
    u = urlsplit(uri)
    if u.scheme != "mongodb" or "," in u.netloc:
        return None
    auth = u.netloc.rpartition("@")[0]
    host = u.hostname or "localhost"
    upstream = "%s:%d" % ("[%s]" % host if ":" in host else host, u.port or 27017)

    def via(port):
        netloc = (auth + "@" if auth else "") + "127.0.0.1:%d" % port
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    return upstream, via


class Toxiproxy:
    def __init__(self):
        if not os.access(SERVER, os.X_OK):
            raise RuntimeError("%s missing: run tools/setup.sh --test" % SERVER)
        self.api_port = free_port()
        self.api = "http://127.0.0.1:%d" % self.api_port
        self.dir = tempfile.mkdtemp(prefix="aiproxy-toxiproxy-")
        self.log = open(os.path.join(self.dir, "toxiproxy.log"), "w")
        self.proc = subprocess.Popen([SERVER, "-host", "127.0.0.1",
                                      "-port", str(self.api_port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_port(self.api_port, proc=self.proc):
            raise RuntimeError("toxiproxy-server did not start")

    def _call(self, method, path, body=None):
        r = httpx.request(method, self.api + path, json=body, timeout=10)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    def proxy(self, name, upstream):
        """A proxy from a free loopback port to upstream ("host:port");
        returns that port."""
        port = free_port()
        self._call("POST", "/proxies", {"name": name, "upstream": upstream,
                                        "listen": "127.0.0.1:%d" % port,
                                        "enabled": True})
        return port

    def proxy_store(self, store, name="store"):
        """A proxy named name to store (conftest's Store): a ProxiedStore
        for Gateway, or None when the store's URI cannot be proxied."""
        addr = store_address(store.uri)
        if not addr:
            return None
        upstream, via = addr
        return ProxiedStore(store, via(self.proxy(name, upstream)))

    def add(self, proxy, name, kind, stream="downstream", toxicity=1.0,
            **attributes):
        """A toxic of type kind on one stream of proxy, applied to every
        connection, open ones included."""
        self._call("POST", "/proxies/%s/toxics" % proxy,
                   {"name": name, "type": kind, "stream": stream,
                    "toxicity": toxicity, "attributes": attributes})
        return name

    def reset_peer(self, proxy, stream="downstream", timeout=0):
        """The next data on stream (after timeout ms) is dropped and the
        connection reset (RST)."""
        return self.add(proxy, "reset_peer_" + stream, "reset_peer", stream,
                        timeout=timeout)

    def timeout(self, proxy, stream="downstream", timeout=0):
        """Data on stream is dropped; the connection is closed after
        timeout ms (0: never)."""
        return self.add(proxy, "timeout_" + stream, "timeout", stream,
                        timeout=timeout)

    def latency(self, proxy, ms, stream="downstream", jitter=0):
        """Data on stream is delayed by ms (± jitter)."""
        return self.add(proxy, "latency_" + stream, "latency", stream,
                        latency=ms, jitter=jitter)

    def limit_data(self, proxy, nbytes, stream="downstream"):
        """Each connection is closed once nbytes passed on stream."""
        return self.add(proxy, "limit_data_" + stream, "limit_data", stream,
                        bytes=nbytes)

    def remove(self, proxy, name):
        self._call("DELETE", "/proxies/%s/toxics/%s" % (proxy, name))

    def toxics(self, proxy):
        return self._call("GET", "/proxies/%s/toxics" % proxy)

    def enable(self, proxy, on=True):
        """Off closes every connection and refuses new ones."""
        self._call("POST", "/proxies/%s" % proxy, {"enabled": on})

    def disable(self, proxy):
        self.enable(proxy, False)

    def reset(self):
        """Every proxy enabled again, every toxic removed."""
        self._call("POST", "/reset")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
