"""Toxiproxy (built by tools/setup.sh --test into .tools/bin) between the
gateway and the store: a TCP proxy whose faults ("toxics") are set through
its HTTP API while traffic flows."""
import os
import subprocess

import httpx

from conftest import ROOT, free_port, make_tmpdir, wait_port

SERVER = os.path.join(ROOT, ".tools", "bin", "toxiproxy-server")


class Toxiproxy:
    def __init__(self):
        self.api_port = free_port()
        self.api = "http://127.0.0.1:%d" % self.api_port
        self.dir = make_tmpdir("aiproxy-toxiproxy-")
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

    def add(self, proxy, name, kind, stream="downstream", **attributes):
        """A toxic: kind is reset_peer, timeout, latency, limit_data...;
        stream downstream acts on the store's replies."""
        self._call("POST", "/proxies/%s/toxics" % proxy,
                   {"name": name, "type": kind, "stream": stream,
                    "toxicity": 1.0, "attributes": attributes})

    def remove(self, proxy, name):
        self._call("DELETE", "/proxies/%s/toxics/%s" % (proxy, name))

    def enable(self, proxy, on):
        """Off closes every connection and refuses new ones."""
        self._call("POST", "/proxies/%s" % proxy, {"enabled": on})

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
