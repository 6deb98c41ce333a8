#!/usr/bin/env python3
"""mod_aiproxy's benchmark driver (bench/run.sh calls it after bench/setup.sh).

    bench.py quick|full|soak|profile [--targets a,b,...] [--out FILE]

Everything runs on loopback: the fast fake upstream (bench/tools/upstream),
the local store, and each target in front of the same upstream:

  direct      the upstream itself
  httpd-proxy httpd with plain mod_proxy (bench/conf/proxy.conf)
  mod_aiproxy httpd with conf/httpd.conf: token, allow-list, reservation and
              settlement in the store, cost headers
  portkey     @portkey-ai/gateway (pinned in bench/pins/package.json)
  litellm     LiteLLM's proxy (pinned in bench/setup.sh)

Load comes from wrk (bench/lua/chat.lua), streams from bench/tools/ssebench.
The gateway under test is pinned to CPU 0, the load generator, upstream and
store to the other CPUs. Every figure of a run is measured in the same
process, and ratios are taken within one round; rounds rotate the targets'
order. Results: a markdown report on stdout and bench/results/latest-MODE.json
(a copy per run in bench/results/history/).
"""
import argparse
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import jwt
import pymongo
from bson import Int64

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from loopback import free_port, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(BENCH, ".build")
RESULTS = os.path.join(BENCH, "results")
APACHE = "/usr/sbin/apache2"
IS_ROOT = os.geteuid() == 0
PORTKEY_JS = os.path.join(BENCH, "peers/node_modules/@portkey-ai/gateway/build/start-server.js")
LITELLM_BIN = os.path.join(BENCH, ".venv-litellm/bin/litellm")

TOKEN_SECRET = "bench-" + secrets.token_hex(24)
PROVIDER_KEY = "sk-bench-" + secrets.token_hex(8)
LITELLM_KEY = "sk-litellm-" + secrets.token_hex(8)
USERS = ["u%03d@bench.example" % i for i in range(64)]
DB = "bench"

CHAT = {"model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "Say hello to the benchmark in one short sentence."}],
        "max_tokens": 16}
STREAM = dict(CHAT, max_tokens=64, stream=True, stream_options={"include_usage": True})

MODES = {
    # ~2.5 minutes: one round, the instant upstream at c=1/16/64, the delayed
    # upstream at c=16, streams at c=1.
    "quick": dict(rounds=1, duration=4, warmup=1, conc=[1, 16, 64], delay_ms=20,
                  delay_conc=[16], delay_duration=4, streams=20, stream_conc=[1],
                  events=20, event_delay_ms=5, count_seconds=2, store_warmup=10, budget=420),
    # ~15 minutes: three rounds of everything.
    "full": dict(rounds=3, duration=12, warmup=2, conc=[1, 16, 64], delay_ms=20,
                 delay_conc=[1, 16, 64], delay_duration=8, streams=100, stream_conc=[1, 16],
                 events=20, event_delay_ms=5, count_seconds=5, store_warmup=20,
                 budget=1800),
    "soak": dict(requests=100000, conc=16, max_seconds=600, sample_every=2, budget=900),
    "profile": dict(callgrind_requests=2000, perf_seconds=8, perf_conc=64, budget=900),
}
TARGETS = ["direct", "httpd-proxy", "mod_aiproxy", "portkey", "litellm"]
GATEWAYS = ["httpd-proxy", "mod_aiproxy", "portkey", "litellm"]


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ system

def cpu_plan():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "only one CPU: nothing pinned, gateway and load share it"
    gw, load = [cpus[0]], cpus[1:]
    return (",".join(map(str, gw)), ",".join(map(str, load)),
            "gateway under test on CPU %s; wrk, upstream and store on CPU %s"
            % (gw[0], ",".join(map(str, load))))


GW_CPUS, LOAD_CPUS, PIN_NOTE = cpu_plan()


def pinned(cpus, argv):
    return (["taskset", "-c", cpus] + argv) if cpus else argv


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    if not pid:
        return []
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


TICK = os.sysconf("SC_CLK_TCK")


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / TICK


def cpu_busy():
    """(busy, total) jiffies of every CPU, from /proc/stat."""
    busy = total = 0
    for line in open("/proc/stat"):
        if line.startswith("cpu") and line[3].isdigit():
            v = list(map(int, line.split()[1:]))
            total += sum(v)
            busy += sum(v) - v[3] - v[4]
    return busy, total


def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}
    try:
        cpuinfo = open("/proc/cpuinfo").read()
        m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
        info["cpu"] = m.group(1).strip() if m else "?"
        m = re.search(r"^cpu MHz\s*:\s*(.*)$", cpuinfo, re.M)
        info["cpu_mhz"] = m.group(1).strip() if m else "?"
    except OSError:
        pass
    try:
        m = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
        info["memory_gib"] = round(int(m.group(1)) / 1048576, 1)
    except (OSError, AttributeError):
        pass

    def version(argv, pattern=None):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = (out.stdout + out.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(pattern, text) if pattern else None
        return m.group(1) if m else text.splitlines()[0] if text else None

    info["httpd"] = version([APACHE, "-v"], r"Apache/(\S+)")
    info["wrk"] = version(["wrk", "-v"], r"wrk (\S+)")
    info["node"] = version(["node", "--version"])
    info["java"] = version(["java", "-version"], r'version "([^"]+)"')
    info["go"] = version(["go", "version"], r"go version (\S+)")
    try:
        info["portkey"] = json.load(open(os.path.join(
            os.path.dirname(os.path.dirname(PORTKEY_JS)), "package.json")))["version"]
    except (OSError, ValueError, KeyError):
        info["portkey"] = None
    info["litellm"] = version([os.path.join(BENCH, ".venv-litellm/bin/python"), "-c",
                               "import importlib.metadata as m; print(m.version('litellm'))"])
    info["commit"] = version(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "mod_aiproxy",
                            "conf"], capture_output=True, text=True).stdout.strip()
    info["worktree"] = "modified mod_aiproxy/ or conf/" if dirty else "clean"
    info["pinning"] = PIN_NOTE
    return info


# ------------------------------------------------------------------ processes

class Proc:
    """A process we started, in its own session, so that stop() ends it and
    its children, and nothing else."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=15):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        # Children (httpd's, uvicorn's) may outlive the leader briefly.
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.logf.close()

    def tail(self, n=20):
        try:
            return "".join(open(self.log_path, errors="replace").readlines()[-n:])
        except OSError:
            return ""


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Upstream:
    def __init__(self, var, jwks_path):
        self.proc = Proc(pinned(LOAD_CPUS, [os.path.join(BUILD, "upstream"), "-jwks", jwks_path]),
                         os.path.join(var, "upstream.log"))
        deadline = time.time() + 10
        self.port = None
        while time.time() < deadline and self.port is None:
            m = re.search(r"READY (\d+)", open(self.proc.log_path).read())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if not self.port:
            raise RuntimeError("upstream did not start: " + self.proc.tail())
        self.base = "http://127.0.0.1:%d/v1" % self.port

    def config(self, **kw):
        q = "&".join("%s=%d" % kv for kv in kw.items())
        return http_get("http://127.0.0.1:%d/__config?%s" % (self.port, q))

    def stats(self):
        return http_get("http://127.0.0.1:%d/__stats" % self.port)


class Store:
    def __init__(self, var):
        self.dir = os.path.join(var, "store")
        self.port = free_port()
        argv = [os.path.join(ROOT, "tools/store.sh"), "start", self.dir, str(self.port), "--memory"]
        # Every request leaves a record in memory: room for a full run's.
        env = dict(os.environ, STORE_JAVA_OPTS=os.environ.get("STORE_JAVA_OPTS", "-Xmx3g"))
        subprocess.run(pinned(LOAD_CPUS, argv), check=True, stdout=subprocess.DEVNULL,
                       timeout=180, env=env)
        self.uri = "mongodb://127.0.0.1:%d" % self.port
        self.pid = int(open(os.path.join(self.dir, "store.pid")).read())

    def client(self):
        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000)

    def stop(self):
        subprocess.run([os.path.join(ROOT, "tools/store.sh"), "stop", self.dir],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


MODULE_ROOT = ROOT   # what AIPROXY_ROOT points at: see snapshot_module()


def snapshot_module(var):
    """Runs the module as it was when the run began: a copy of
    build/mod_aiproxy.so beside links to the rest of the tree, so that a
    rebuild during the run changes nothing."""
    global MODULE_ROOT
    import hashlib
    root = os.path.join(var, "root")
    os.makedirs(os.path.join(root, "build"))
    for name in os.listdir(ROOT):
        if name not in ("build", ".git"):
            os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
    so = os.path.join(root, "build", "mod_aiproxy.so")
    shutil.copy2(os.path.join(ROOT, "build", "mod_aiproxy.so"), so)
    os.chmod(root, 0o755)
    os.chmod(os.path.join(root, "build"), 0o755)
    MODULE_ROOT = root
    return hashlib.sha256(open(so, "rb").read()).hexdigest()[:16]


def mint(email):
    return jwt.encode({"email": email, "iat": int(time.time()) - 5}, TOKEN_SECRET,
                      algorithm="HS256", headers={"kid": "bench"})


# ------------------------------------------------------------------ targets

class Target:
    """One thing to load: its URL, request headers, and the processes that
    make it up (none for the direct upstream)."""
    gateway = True
    note = ""

    def __init__(self, name, var):
        self.name = name
        self.var = os.path.join(var, name)
        os.makedirs(self.var, exist_ok=True)
        os.chmod(self.var, 0o755)
        self.proc = None
        self.url = None
        self.headers = {}
        self.tokens = None        # list of tokens, rotated by wrk
        self.token_header = "Authorization"
        self.error = None

    def pids(self):
        return tree(self.proc.pid) if self.proc and self.proc.alive() else []

    def stop(self):
        if self.proc:
            self.proc.stop()

    def check(self):
        """One chat request; returns None or what went wrong. (Streams report
        their own failures in the stream table.)"""
        for body in (CHAT,):
            hdrs = dict(self.headers, **{"Content-Type": "application/json"})
            if self.tokens:
                hdrs[self.token_header] = "Bearer " + self.tokens[0]
            req = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=hdrs, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    text = r.read().decode("utf-8", "replace")
                    if r.status != 200 or ("[DONE]" not in text if body.get("stream")
                                           else "chat.completion" not in text):
                        return "unexpected answer %d: %s" % (r.status, text[:200])
            except Exception as e:  # noqa: BLE001 - report whatever broke
                detail = ""
                if hasattr(e, "read"):
                    detail = e.read()[:300].decode("utf-8", "replace")
                return "%s %s" % (e, detail)
        return None


class Direct(Target):
    gateway = False
    note = "the fake upstream itself"

    def start(self, up, store):
        self.url = up.base + "/chat/completions"
        self.headers = {"Authorization": "Bearer " + PROVIDER_KEY}


def httpd_argv(conf, defines):
    argv = [APACHE, "-f", conf, "-D", "FOREGROUND"]
    for d in defines:
        argv += ["-D", d]
    return argv


class HttpdProxy(Target):
    note = "mod_proxy ProxyPass, same MPM/keep-alive/logging as conf/httpd.conf"

    def start(self, up, store, wrap=None, timeout=20):
        port = free_port()
        env = dict(os.environ, BENCH_VAR=self.var, BENCH_LISTEN="127.0.0.1:%d" % port,
                   BENCH_UPSTREAM=up.base)
        conf = os.path.join(BENCH, "conf/proxy.conf")
        if IS_ROOT:
            shutil.chown(self.var, "aiproxy")
        if wrap:
            argv = wrap + [APACHE, "-f", conf, "-X"]
        else:
            argv = httpd_argv(conf, ["BENCH_AS_ROOT"] if IS_ROOT else [])
        self.proc = Proc(pinned(GW_CPUS, argv), os.path.join(self.var, "stdout.log"), env=env)
        if not wait_port(port, timeout, self.proc.p):
            raise RuntimeError("httpd did not start: " + self.proc.tail() + self.error_log())
        self.url = "http://127.0.0.1:%d/v1/chat/completions" % port
        self.headers = {"Authorization": "Bearer " + PROVIDER_KEY}

    def error_log(self):
        p = os.path.join(self.var, "error.log")
        return open(p, errors="replace").read()[-2000:] if os.path.exists(p) else ""


class AIProxy(Target):
    note = ("HS256 token, allow-list, budget leases in the local store, "
            "cost headers; %d users" % len(USERS))

    def env(self, up, store_uri, port):
        return dict(os.environ, AIPROXY_ROOT=MODULE_ROOT, AIPROXY_VAR=self.var,
                    AIPROXY_LISTEN="127.0.0.1:%d" % port, AIPROXY_STORE=store_uri,
                    AIPROXY_DB=DB, AIPROXY_LOGLEVEL="warn", AIPROXY_ADMINS="admin@bench.example",
                    AIPROXY_TOKEN_SECRET=TOKEN_SECRET, OPENAI_BASE_URL=up.base,
                    OPENAI_API_KEY=PROVIDER_KEY, ANTHROPIC_BASE_URL=up.base,
                    ANTHROPIC_API_KEY=PROVIDER_KEY)

    def argv(self, extra=(), as_root=IS_ROOT):
        a = [APACHE, "-f", os.path.join(MODULE_ROOT, "conf/httpd.conf")]
        if as_root:
            a += ["-D", "AIPROXY_AS_ROOT"]
        return a + list(extra)

    def start(self, up, store, store_uri=None, wrap=None, timeout=20):
        os.makedirs(os.path.join(self.var, "conf.d"), exist_ok=True)
        # The tokens carry kid "bench" (LiteLLM's JWKS names it): a kid must
        # name one of the gateway's secrets.
        with open(os.path.join(self.var, "conf.d", "secret.conf"), "w") as f:
            f.write("AIProxyTokenSecret bench env:AIPROXY_TOKEN_SECRET\n")
        if IS_ROOT:
            shutil.chown(self.var, "aiproxy")
        port = free_port()
        env = self.env(up, store_uri or store.uri, port)
        argv = self.argv(["-D", "FOREGROUND"])
        if wrap:
            argv = wrap + self.argv(["-X"], as_root=False)
        self.proc = Proc(pinned(GW_CPUS, argv), os.path.join(self.var, "stdout.log"), env=env)
        if not wait_port(port, timeout, self.proc.p):
            raise RuntimeError("httpd did not start: " + self.proc.tail() + self.error_log())
        self.url = "http://127.0.0.1:%d/openai/v1/chat/completions" % port
        self.tokens = [mint(u) for u in USERS]
        self.port = port

    def error_log(self):
        p = os.path.join(self.var, "error.log")
        return open(p, errors="replace").read()[-2000:] if os.path.exists(p) else ""


class AIProxyCourse(AIProxy):
    """mod_aiproxy with every token charged to one course as well: a second
    account (the course's budget) held and settled per request."""
    note = ("as mod_aiproxy, each request also charged to a course "
            "(its budget leased too); %d users" % len(USERS))

    def start(self, up, store, store_uri=None, wrap=None, timeout=20):
        c = store.client()
        c[DB].courses.replace_one({"_id": "bench"}, {
            "_id": "bench", "name": "bench", "budget": Int64(10 ** 18),
            "instructors": []}, upsert=True)
        c[DB].members.replace_one({"_id": "bench|@bench.example"}, {
            "_id": "bench|@bench.example", "course": "bench", "who": "@bench.example",
            "added_by": "bench", "added": datetime.datetime.now(datetime.timezone.utc)},
            upsert=True)
        c.close()
        super().start(up, store, store_uri, wrap, timeout)
        self.tokens = [jwt.encode({"email": u, "course": "bench",
                                   "iat": int(time.time()) - 5}, TOKEN_SECRET,
                                  algorithm="HS256", headers={"kid": "bench"})
                       for u in USERS]


def unavailable(peer):
    try:
        return "not installed: " + open(os.path.join(BUILD, peer + ".unavailable")).read().strip()
    except OSError:
        return "not installed (run bench/setup.sh)"


class Portkey(Target):
    note = ("JWT check (HS256 key from a JWKS on loopback) and model allow-list "
            "as before_request_hooks guardrails; no budget or metering store in "
            "the open-source gateway")

    def start(self, up, store):
        if not os.path.exists(PORTKEY_JS):
            raise RuntimeError(unavailable("portkey"))
        port = free_port()
        env = dict(os.environ)
        self.proc = Proc(pinned(GW_CPUS, ["node", PORTKEY_JS, "--port=%d" % port, "--headless"]),
                         os.path.join(self.var, "stdout.log"), env=env)
        if not wait_port(port, 30, self.proc.p):
            raise RuntimeError("did not start: " + self.proc.tail())
        self.url = "http://127.0.0.1:%d/v1/chat/completions" % port
        jwks_uri = "http://127.0.0.1:%d/jwks.json" % up.port
        config = {"provider": "openai", "api_key": PROVIDER_KEY, "custom_host": up.base,
                  "before_request_hooks": [{
                      "type": "guardrail", "id": "bench-guard", "deny": True,
                      "checks": [
                          {"id": "default.jwt",
                           "parameters": {"jwksUri": jwks_uri, "headerKey": "x-bench-token"}},
                          {"id": "default.modelWhitelist",
                           "parameters": {"models": ["gpt-4o-mini", "text-embedding-3-small"]}}]}]}
        self.headers = {"x-portkey-config": json.dumps(config, separators=(",", ":"))}
        self.tokens = [mint(u) for u in USERS]
        self.token_header = "x-bench-token"


class LiteLLM(Target):
    note = ("master key, model list as allow-list, cost headers; no budgets or "
            "spend tracking: they need PostgreSQL through Prisma, whose engines "
            "are downloaded at run time (no network here)")

    def start(self, up, store):
        if not os.path.exists(LITELLM_BIN):
            raise RuntimeError(unavailable("litellm"))
        port = free_port()
        cfg = os.path.join(self.var, "config.yaml")
        with open(cfg, "w") as f:
            f.write("model_list:\n"
                    "  - model_name: gpt-4o-mini\n"
                    "    litellm_params:\n"
                    "      model: openai/gpt-4o-mini\n"
                    "      api_base: %s\n"
                    "      api_key: %s\n"
                    "general_settings:\n"
                    "  master_key: %s\n" % (up.base, PROVIDER_KEY, LITELLM_KEY))
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
                   NO_DOCS="True", DISABLE_ADMIN_UI="True")
        self.proc = Proc(pinned(GW_CPUS, [LITELLM_BIN, "--config", cfg, "--host", "127.0.0.1",
                                          "--port", str(port), "--num_workers", "1"]),
                         os.path.join(self.var, "stdout.log"), env=env)
        if not wait_port(port, 90, self.proc.p):
            raise RuntimeError("did not start: " + self.proc.tail())
        self.url = "http://127.0.0.1:%d/v1/chat/completions" % port
        self.headers = {"Authorization": "Bearer " + LITELLM_KEY}


CLASSES = {"direct": Direct, "httpd-proxy": HttpdProxy, "mod_aiproxy": AIProxy,
           "mod_aiproxy-course": AIProxyCourse,
           "portkey": Portkey, "litellm": LiteLLM}


# ------------------------------------------------------------------ load

def write_inputs(t, var, body):
    base = os.path.join(var, "in-%s-%s" % (t.name, "s" if body.get("stream") else "c"))
    with open(base + ".body", "w") as f:
        json.dump(body, f, separators=(",", ":"))
    with open(base + ".headers", "w") as f:
        for k, v in t.headers.items():
            f.write("%s: %s\n" % (k, v))
    tok = ""
    if t.tokens:
        tok = base + ".tokens"
        with open(tok, "w") as f:
            f.write("\n".join(t.tokens) + "\n")
    return base + ".body", base + ".headers", tok


def wrk(t, var, conc, seconds, limit=None, timeout_s=10):
    body, headers, tokens = write_inputs(t, var, CHAT)
    env = dict(os.environ, BENCH_BODY=body, BENCH_HEADERS=headers, BENCH_TOKENS=tokens,
               BENCH_TOKEN_HEADER=t.token_header)
    nload = len(LOAD_CPUS.split(",")) if LOAD_CPUS else 1
    threads = max(1, min(conc, nload))
    done_file = None
    if limit:
        done_file = os.path.join(var, "wrk-done-%d" % time.time_ns())
        env["BENCH_LIMIT"] = str(max(1, limit // threads))
        env["BENCH_DONE_FILE"] = done_file
    argv = pinned(LOAD_CPUS, ["wrk", "-t%d" % threads, "-c%d" % conc, "-d%ds" % seconds,
                              "--timeout", "%ds" % timeout_s, "-s",
                              os.path.join(BENCH, "lua/chat.lua"), t.url])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    if done_file:
        # Every thread reached its count: end the run now (wrk reports on SIGINT).
        while p.poll() is None:
            try:
                if len(open(done_file).read().split()) >= threads:
                    p.send_signal(signal.SIGINT)
                    break
            except OSError:
                pass
            time.sleep(0.05)
    try:
        stdout, stderr = p.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        stdout, stderr = p.communicate()
    p.stdout, p.stderr = stdout, stderr
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            out = json.loads(line[len("BENCH_JSON "):])
    if not out:
        raise RuntimeError("wrk failed: %s %s" % (p.stdout[-500:], p.stderr[-500:]))
    if p.stderr.strip():
        out["stderr"] = p.stderr.strip()[-500:]
    return out


def measure(t, var, conc, seconds, warmup, store, up):
    if warmup:
        wrk(t, var, conc, warmup)
    pids = t.pids()
    spids = tree(store.pid) if store else []
    upids = [up.proc.pid]
    c0, s0, u0, w0 = cpu_seconds(pids), cpu_seconds(spids), cpu_seconds(upids), time.time()
    k0, b0 = children_cpu(), cpu_busy()
    res = wrk(t, var, conc, seconds)
    wall = time.time() - w0
    b1 = cpu_busy()
    # Everything busy on the machine, and what of it was not ours: the noise.
    ncpu = len(os.sched_getaffinity(0))
    busy = 100.0 * ncpu * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
    ours = 100 * ((cpu_seconds(t.pids()) - c0 if pids else 0) + (cpu_seconds(spids) - s0) +
                  (cpu_seconds(upids) - u0) + (children_cpu() - k0)) / wall
    res["machine_busy_pct"] = round(busy, 1)
    res["foreign_cpu_pct"] = round(max(0.0, busy - ours), 1)
    res["wrk_cpu_pct"] = round(100 * (children_cpu() - k0) / wall, 1)
    res["gateway_cpu_pct"] = round(100 * (cpu_seconds(t.pids()) - c0) / wall, 1) if pids else None
    res["store_cpu_pct"] = round(100 * (cpu_seconds(spids) - s0) / wall, 1) if spids else None
    res["upstream_cpu_pct"] = round(100 * (cpu_seconds(upids) - u0) / wall, 1)
    pids = t.pids()
    res["gateway_rss_kb"] = rss_kb(pids) if pids else None
    res["gateway_procs"] = len(pids)
    return res


def ssebench(t, var, n, conc):
    body, headers, tokens = write_inputs(t, var, STREAM)
    argv = [os.path.join(BUILD, "ssebench"), "-url", t.url, "-body", body, "-n", str(n),
            "-c", str(conc)]
    for k, v in t.headers.items():
        argv += ["-H", "%s: %s" % (k, v)]
    if t.tokens:
        argv += ["-H", "%s: Bearer %s" % (t.token_header, t.tokens[0])]
    p = subprocess.run(pinned(LOAD_CPUS, argv), capture_output=True, text=True, timeout=300)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError("ssebench failed: " + p.stderr[-500:])
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ store

def prepare_store(store):
    sys.path.insert(0, os.path.join(ROOT, "schema"))
    import apply as schema_apply  # noqa: E402
    schema_apply.apply(store.uri, DB)
    c = store.client()
    # A cap no run can reach, for the whole benchmark domain.
    c[DB].users.update_one({"_id": "@bench.example"}, {"$set": {"cap": Int64(10 ** 18)}},
                           upsert=True)
    c.close()


def ledger_totals(store):
    c = store.client()
    tot = {"requests": 0, "spent": 0, "reserved": 0, "load": 0, "open_holds": 0, "months": 0}
    for d in c[DB].months.find({}):
        tot["months"] += 1
        for k in ("requests", "spent", "reserved", "load"):
            tot[k] += int(d.get(k, 0))
        tot["open_holds"] += len(d.get("holds") or {})
    tot["request_records"] = c[DB].requests.estimated_document_count()
    c.close()
    return tot


def count_round_trips(up, store, var, seconds):
    """mod_aiproxy through the counting relay: store commands per request."""
    relay = Proc(pinned(LOAD_CPUS, [os.path.join(BUILD, "storecount"), "-to",
                                    "127.0.0.1:%d" % store.port]),
                 os.path.join(var, "storecount.log"))
    try:
        deadline = time.time() + 10
        m = None
        while time.time() < deadline and not m:
            m = re.search(r"READY (\d+) (\d+)", open(relay.log_path).read())
            time.sleep(0.05)
        if not m:
            raise RuntimeError("storecount did not start")
        rport, cport = int(m.group(1)), int(m.group(2))
        t = AIProxy("mod_aiproxy-count", var)
        t.start(up, store, store_uri="mongodb://127.0.0.1:%d" % rport)
        try:
            wrk(t, var, 4, 1)
            http_get("http://127.0.0.1:%d/reset" % cport)
            before = ledger_totals(store)["requests"]
            res = wrk(t, var, 16, seconds)
            time.sleep(0.5)
            counts = http_get("http://127.0.0.1:%d/counts" % cport)
            done = ledger_totals(store)["requests"] - before
        finally:
            t.stop()
        per = {k: round(v / done, 3) for k, v in sorted(counts["commands"].items())} if done else {}
        monitoring = sum(v for k, v in counts["commands"].items()
                         if k.lower() in ("hello", "ismaster", "ping", "endsessions"))
        return {"requests": done, "wrk_requests": res["requests"], "commands": counts["commands"],
                "per_request": per,
                "round_trips_per_request": round((counts["total"] - monitoring) / done, 3)
                if done else None,
                "monitoring_commands": monitoring, "connections": counts["connections"]}
    finally:
        relay.stop()


# ------------------------------------------------------------------ runs

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def start_targets(names, var, up, store):
    targets, failed = {}, {}
    for name in names:
        t = CLASSES[name](name, var)
        try:
            log("starting", name)
            t.start(up, store)
            err = t.check()
            if err:
                raise RuntimeError("check request failed: " + err)
            targets[name] = t
        except Exception as e:  # noqa: BLE001 - the table says why
            log("  %s cannot run: %s" % (name, e))
            failed[name] = str(e)[:400]
            t.stop()
    return targets, failed


def run_bench(mode, names, var, deadline):
    cfg = MODES[mode]
    res = {"mode": mode, "config": cfg, "targets": {}, "runs": [], "streams": [],
           "delay_runs": []}
    up = Upstream(var, write_jwks(var))
    store = Store(var)
    prepare_store(store)
    targets = {}
    try:
        targets, failed = start_targets(names, var, up, store)
        for name in names:
            t = targets.get(name)
            res["targets"][name] = {"status": "ok" if t else "not run",
                                    "why": failed.get(name), "note": CLASSES[name].note}
        order = [n for n in names if n in targets]
        up.config(delay_ms=0)
        # Warm every target before anything counts; the store's JVM needs
        # longer (its JIT makes each operation several times cheaper).
        for name in order:
            wrk(targets[name], var, 16, cfg["store_warmup"] if name == "mod_aiproxy"
                else cfg["warmup"] + 2)
        for rnd in range(cfg["rounds"]):
            rot = order[rnd % len(order):] + order[:rnd % len(order)]
            for conc in cfg["conc"]:
                for name in rot:
                    if time.time() > deadline:
                        raise TimeoutError("time budget spent")
                    r = measure(targets[name], var, conc, cfg["duration"], cfg["warmup"],
                                store if name == "mod_aiproxy" else None, up)
                    r.update(target=name, conc=conc, round=rnd, upstream_delay_ms=0)
                    res["runs"].append(r)
                    log("%-12s c=%-3d %9.0f req/s  p50 %.3f ms  p99 %.3f ms" % (
                        name, conc, r["rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"]))
        # The delayed upstream: what a gateway adds when the provider is slow.
        up.config(delay_ms=cfg["delay_ms"])
        for rnd in range(1 if mode == "quick" else cfg["rounds"]):
            rot = order[rnd % len(order):] + order[:rnd % len(order)]
            for conc in cfg["delay_conc"]:
                for name in rot:
                    if time.time() > deadline:
                        raise TimeoutError("time budget spent")
                    r = measure(targets[name], var, conc, cfg["delay_duration"], 1,
                                store if name == "mod_aiproxy" else None, up)
                    r.update(target=name, conc=conc, round=rnd, upstream_delay_ms=cfg["delay_ms"])
                    res["delay_runs"].append(r)
                    log("%-12s c=%-3d delay %d ms: %7.0f req/s  p50 %.3f ms" % (
                        name, conc, cfg["delay_ms"], r["rps"], r["latency_ms"]["p50"]))
        up.config(delay_ms=0, events=cfg["events"], event_delay_ms=cfg["event_delay_ms"])
        for conc in cfg["stream_conc"]:
            for name in order:
                if time.time() > deadline:
                    raise TimeoutError("time budget spent")
                try:
                    s = ssebench(targets[name], var, cfg["streams"], conc)
                except Exception as e:  # noqa: BLE001
                    s = {"error": str(e)[:300]}
                s.update(target=name, conc=conc, events=cfg["events"],
                         event_delay_ms=cfg["event_delay_ms"])
                res["streams"].append(s)
                log("%-12s streams c=%d: ttfb p50 %s ms, gap mean %s ms" % (
                    name, conc, s.get("ttfb_ms", {}).get("p50"), s.get("gap_ms", {}).get("mean")))
        up.config(delay_ms=0)
        if "mod_aiproxy" in targets:
            res["ledger"] = ledger_totals(store)
            res["mod_aiproxy_error_log"] = count_errors(targets["mod_aiproxy"])
            for t in list(targets.values()):
                if t.name != "mod_aiproxy":
                    t.stop()
            log("counting store round trips")
            res["store_round_trips"] = count_round_trips(up, store, var, cfg["count_seconds"])
            res["store_rss_kb"] = rss_kb(tree(store.pid))
        res["upstream_stats"] = up.stats()
    except TimeoutError as e:
        res["aborted"] = str(e)
        log("stopped early:", e)
    finally:
        for t in targets.values():
            t.stop()
        up.proc.stop()
        store.stop()
    return res


def count_errors(t):
    p = os.path.join(t.var, "error.log")
    if not os.path.exists(p):
        return {"lines": 0}
    lines = open(p, errors="replace").read().splitlines()
    bad = [x for x in lines if re.search(r"\[(\w+:)?(error|crit|alert|emerg)\]", x)]
    return {"lines": len(lines), "errors": len(bad), "samples": bad[:5]}


def write_jwks(var):
    import base64
    k = base64.urlsafe_b64encode(TOKEN_SECRET.encode()).rstrip(b"=").decode()
    path = os.path.join(var, "jwks.json")
    with open(path, "w") as f:
        json.dump({"keys": [{"kty": "oct", "kid": "bench", "alg": "HS256", "k": k}]}, f)
    return path


def run_soak(var, deadline):
    cfg = MODES["soak"]
    res = {"mode": "soak", "config": cfg}
    up = Upstream(var, write_jwks(var))
    store = Store(var)
    prepare_store(store)
    t = AIProxy("mod_aiproxy", var)
    samples = []
    try:
        t.start(up, store)
        err = t.check()
        if err:
            raise RuntimeError(err)
        log("soak: warm-up")
        wrk(t, var, cfg["conc"], 3)
        time.sleep(1)
        base_requests = up.stats()["requests"]
        res["rss_before_kb"] = rss_kb(t.pids())
        res["procs_before"] = len(t.pids())
        res["store_rss_before_kb"] = rss_kb(tree(store.pid))
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                pids = t.pids()
                samples.append({"t": round(time.time() - t0, 1),
                                "requests": up.stats()["requests"] - base_requests,
                                "rss_kb": rss_kb(pids), "procs": len(pids)})
                stop.wait(cfg["sample_every"])
        t0 = time.time()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        log("soak: %d requests at c=%d" % (cfg["requests"], cfg["conc"]))
        seconds = int(min(cfg["max_seconds"], max(10, deadline - time.time() - 60)))
        w = wrk(t, var, cfg["conc"], seconds, limit=cfg["requests"])
        stop.set()
        th.join()
        time.sleep(1)
        res["wrk"] = w
        res["seconds"] = round(time.time() - t0, 1)
        res["rss_after_kb"] = rss_kb(t.pids())
        res["procs_after"] = len(t.pids())
        res["store_rss_after_kb"] = rss_kb(tree(store.pid))
        res["samples"] = samples
        res["upstream_requests"] = up.stats()["requests"] - base_requests
        res["ledger"] = ledger_totals(store)
        res["error_log"] = count_errors(t)
        # Growth over the second half, when warm-up effects are over.
        half = [s for s in samples if s["requests"] >= res["upstream_requests"] / 2]
        if half:
            res["rss_mid_kb"] = half[0]["rss_kb"]
    finally:
        t.stop()
        up.proc.stop()
        store.stop()
    return res


# ------------------------------------------------------------------ profile

def run_profile(var, deadline):
    cfg = MODES["profile"]
    res = {"mode": "profile", "config": cfg}
    up = Upstream(var, write_jwks(var))
    store = Store(var)
    prepare_store(store)
    outdir = os.path.join(RESULTS, "profile")
    os.makedirs(outdir, exist_ok=True)
    try:
        # 1. callgrind on one httpd process (-X): instructions per request,
        # for mod_aiproxy and, as the baseline, the plain proxy.
        if shutil.which("valgrind"):
            for kind in ("mod_aiproxy", "httpd-proxy"):
                if time.time() > deadline:
                    break
                log("profile: %s: httpd -X under callgrind (slow start)" % kind)
                res["callgrind" if kind == "mod_aiproxy" else "callgrind_proxy"] = \
                    callgrind_target(kind, var, up, store, outdir, cfg["callgrind_requests"])
        else:
            res["callgrind"] = {"error": "valgrind not installed"}
        # 2. perf: where the gateway's CPU goes at c=64 (software clock).
        if shutil.which("perf"):
            t = AIProxy("mod_aiproxy-perf", var)
            t.start(up, store)
            data = os.path.join(outdir, "perf.data")
            try:
                wrk(t, var, cfg["perf_conc"], 2)
                # DWARF unwinding: the libraries have no frame pointers.
                argv = ["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph",
                        "dwarf,16384", "-o", data]
                argv += (["-C", GW_CPUS] if GW_CPUS else ["-a"])
                rec = subprocess.Popen(argv + ["--", "sleep", str(cfg["perf_seconds"])],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                w = wrk(t, var, cfg["perf_conc"], cfg["perf_seconds"])
                rec.wait(timeout=60)
            finally:
                t.stop()
            res["perf"] = perf_summary(data)
            res["perf"]["wrk"] = w
        else:
            res["perf"] = {"error": "perf not installed"}
    finally:
        up.proc.stop()
        store.stop()
    return res


def callgrind_target(kind, var, up, store, outdir, nreq):
    t = CLASSES[kind](kind + "-callgrind", var)
    cg_out = os.path.join(outdir, "callgrind.%s.out" % kind)
    if os.path.exists(cg_out):
        os.unlink(cg_out)
    # Collect inside the connection's processing only: reading the request,
    # every hook and filter (ours, mod_proxy's, the log), writing the
    # response; not start-up, not the store driver's background monitor.
    # (callgrind_control, which would switch collection on after a warm-up,
    # hangs on this machine: the cost is divided by every request served,
    # the first ones included.)
    wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg_out,
            "--toggle-collect=ap_run_process_connection"]
    if IS_ROOT:
        # httpd would drop root after valgrind opened its output as root, and
        # could not write it at exit: run it all as aiproxy.
        os.chmod(outdir, 0o777)
        wrap = ["setpriv", "--reuid=aiproxy", "--regid=aiproxy", "--clear-groups"] + wrap
    before = up.stats()["requests"]
    t.start(up, store, wrap=wrap, timeout=120)
    if kind != "mod_aiproxy":
        t.headers = {"Authorization": "Bearer " + PROVIDER_KEY}
    try:
        w = wrk(t, var, 1, 300, limit=nreq, timeout_s=30)
        time.sleep(1)
        n = up.stats()["requests"] - before
    finally:
        t.proc.stop(timeout=120)
    out = callgrind_summary(cg_out, n, kind)
    out["wrk"] = w
    return out


def callgrind_summary(path, n, kind):
    files = [path] if os.path.exists(path) else []
    if not files or not n:
        return {"error": "no callgrind output"}
    out = {"requests": n, "files": [os.path.relpath(f, ROOT) for f in files]}
    incl = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100"] + files,
                          capture_output=True, text=True).stdout
    excl = subprocess.run(["callgrind_annotate", "--threshold=100"] + files,
                          capture_output=True, text=True).stdout
    m = re.search(r"^\s*([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", incl, re.M) or \
        re.search(r"^\s*([\d,]+)\s+PROGRAM TOTALS", incl, re.M)
    total = int(m.group(1).replace(",", "")) if m else 0
    out["instructions_per_request"] = total // n if total else None

    def rows(text, limit):
        r = []
        for line in text.splitlines():
            mm = re.match(r"^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(\S.*?):(\S+?)(?:\s+\[(.*)\])?$",
                          line)
            if not mm or "PROGRAM TOTALS" in line:
                continue
            ir = int(mm.group(1).replace(",", ""))
            fn = mm.group(3)
            obj = os.path.basename(mm.group(4) or mm.group(2))
            r.append({"function": fn, "object": obj, "ir_per_request": ir // n,
                      "pct": round(100.0 * ir / total, 1) if total else None})
        return r[:limit]
    out["inclusive"] = rows(incl, 150)
    out["self"] = rows(excl, 40)
    with open(os.path.join(os.path.dirname(path), "callgrind-%s-inclusive.txt" % kind), "w") as f:
        f.write(incl)
    with open(os.path.join(os.path.dirname(path), "callgrind-%s-self.txt" % kind), "w") as f:
        f.write(excl)
    return out


PERF_KEEP = re.compile(r"^(aiproxy_|settle$|mongoc_|_mongoc_|bson_|json_|jwt_|ap_proxy|proxy_|"
                       r"ap_process|ap_run_|ap_invoke|ap_core_output|ap_http_|tcp_sendmsg$|"
                       r"tcp_recvmsg$|__libc_sendmsg|__libc_recv|__poll|malloc$|_int_malloc|"
                       r"_int_free|HMAC|EVP_)")


def perf_summary(data):
    if not os.path.exists(data):
        return {"error": "no perf data"}
    out = {}
    views = (("by_command", ["--no-children", "--sort", "comm"]),
             ("by_object", ["--no-children", "--sort", "comm,dso"]),
             ("by_symbol", ["--no-children", "--comms", "apache2", "--sort", "dso,sym"]),
             ("inclusive", ["--children", "--comms", "apache2", "--sort", "sym"]))
    for key, args in views:
        p = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none",
                            "--percent-limit", "0.5"] + args,
                           capture_output=True, text=True, timeout=300)
        rows = []
        for line in p.stdout.splitlines():
            if key == "by_object":
                # perf drops kernel samples from "--comms X --sort dso": sort
                # by both, keep httpd's, as shares of httpd's own time.
                mm = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+(\S+)\s*$", line)
                if mm and mm.group(2) == "apache2":
                    rows.append({"pct": float(mm.group(1)), "object": mm.group(3), "symbol": ""})
                continue
            if key == "inclusive":
                mm = re.match(r"^\s+([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)\s*$", line)
                if mm and PERF_KEEP.match(mm.group(3)):
                    rows.append({"pct": float(mm.group(1)), "self_pct": float(mm.group(2)),
                                 "symbol": mm.group(3)})
                continue
            mm = re.match(r"^\s+([\d.]+)%\s+(\S+)(?:\s+\[[.k]\]\s+(.*?))?\s*$", line)
            if mm:
                rows.append({"pct": float(mm.group(1)), "object": mm.group(2),
                             "symbol": (mm.group(3) or "").strip()})
        if key == "by_object":
            total = sum(r["pct"] for r in rows) or 1
            for r in rows:
                r["pct"] = round(100 * r["pct"] / total, 1)
        # One row per symbol (a static function and its caller may share a name).
        seen, uniq = set(), []
        for r in rows:
            k = (r.get("object"), r["symbol"])
            if k not in seen:
                seen.add(k)
                uniq.append(r)
        out[key] = uniq[:40]
        with open(os.path.join(os.path.dirname(data), "perf-%s.txt" % key), "w") as f:
            f.write(p.stdout)
    return out


# ------------------------------------------------------------------ report

def fmt(x, spec="%.0f"):
    return "–" if x is None else spec % x


def aggregate(runs):
    """Median over rounds of each figure, per (target, c); ratios per round."""
    by = {}
    for r in runs:
        by.setdefault((r["target"], r["conc"]), []).append(r)
    rounds = {}
    for r in runs:
        rounds.setdefault((r["round"], r["conc"]), {})[r["target"]] = r
    agg = {}
    for (name, conc), rs in by.items():
        a = {"rps": median([r["rps"] for r in rs]),
             "p50": median([r["latency_ms"]["p50"] for r in rs]),
             "p99": median([r["latency_ms"]["p99"] for r in rs]),
             "rss_kb": median([r.get("gateway_rss_kb") for r in rs]),
             "cpu": median([r.get("gateway_cpu_pct") for r in rs]),
             "store_cpu": median([r.get("store_cpu_pct") for r in rs]),
             "cpu_ms": median([r["gateway_cpu_pct"] * 10 / r["rps"] for r in rs
                               if r.get("gateway_cpu_pct") is not None and r["rps"]]),
             "noise": median([r.get("foreign_cpu_pct") for r in rs]),
             "errors": sum(sum(r["errors"].values()) for r in rs),
             "requests": sum(r["requests"] for r in rs), "rounds": len(rs)}
        added, ratio = [], []
        for (rnd, c), tg in rounds.items():
            if c != conc or name not in tg:
                continue
            if "direct" in tg:
                added.append(tg[name]["latency_ms"]["p50"] - tg["direct"]["latency_ms"]["p50"])
            if "httpd-proxy" in tg and tg["httpd-proxy"]["rps"]:
                ratio.append(tg[name]["rps"] / tg["httpd-proxy"]["rps"])
        a["added_p50"] = median(added)
        a["vs_proxy"] = median(ratio)
        agg[(name, conc)] = a
    return agg


def table(res, runs_key, title):
    agg = aggregate(res[runs_key])
    if not agg:
        return []
    names = [n for n in res["targets"] if any(k[0] == n for k in agg)]
    concs = sorted({k[1] for k in agg})
    lines = ["### " + title, "",
             "| target | c | req/s | p50 ms | p99 ms | added p50 ms | req/s vs httpd proxy "
             "| gateway RSS MiB | gateway CPU % | gateway CPU ms/req | other load % | errors |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for conc in concs:
        for n in names:
            a = agg.get((n, conc))
            if not a:
                continue
            lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                n, conc, fmt(a["rps"]), fmt(a["p50"], "%.3f"), fmt(a["p99"], "%.3f"),
                "–" if n == "direct" else fmt(a["added_p50"], "%+.3f"),
                fmt(a["vs_proxy"] and 100 * a["vs_proxy"], "%.0f%%") if n != "direct" else "–",
                fmt(a["rss_kb"] and a["rss_kb"] / 1024, "%.1f"),
                fmt(a["cpu"]) + (" (+store %s)" % fmt(a["store_cpu"])
                                 if a["store_cpu"] is not None else ""),
                fmt(a["cpu_ms"], "%.3f"), fmt(a["noise"]), a["errors"]))
    lines.append("")
    return lines


def stream_table(res):
    ss = res.get("streams") or []
    if not ss:
        return []
    direct = {s["conc"]: s for s in ss if s["target"] == "direct" and "ttfb_ms" in s}
    ev = ss[0]
    lines = ["### Streams: %d content events, %d ms apart (upstream), %d streams each" % (
        ev["events"], ev["event_delay_ms"], res["config"]["streams"]), "",
        "| target | c | TTFB p50 ms | TTFB p99 ms | added TTFB p50 ms | event gap mean ms "
        "| gap p99 ms | added gap mean ms | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for s in ss:
        if "ttfb_ms" not in s or not s["ttfb_ms"].get("n"):
            why = s.get("error") or "; ".join(s.get("error_samples", {}))
            lines.append("| %s | %d | – | – | – | – | – | – | %s: %s |" % (
                s["target"], s["conc"], s.get("errors", "all"),
                why.replace("|", "/").replace("\n", " ")[:120]))
            continue
        d = direct.get(s["conc"])
        add_t = s["ttfb_ms"].get("p50", 0) - d["ttfb_ms"].get("p50", 0) if d else None
        add_g = s["gap_ms"].get("mean", 0) - d["gap_ms"].get("mean", 0) if d else None
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %d |" % (
            s["target"], s["conc"], fmt(s["ttfb_ms"].get("p50"), "%.3f"),
            fmt(s["ttfb_ms"].get("p99"), "%.3f"),
            "–" if s["target"] == "direct" else fmt(add_t, "%+.3f"),
            fmt(s["gap_ms"].get("mean"), "%.3f"), fmt(s["gap_ms"].get("p99"), "%.3f"),
            "–" if s["target"] == "direct" else fmt(add_g, "%+.3f"), s["errors"]))
    lines.append("")
    return lines


def goals(res):
    agg = aggregate(res["runs"])
    out = ["### Goals", ""]
    # Issue 14's goals (budget leases): reported, not asserted.
    for conc in (16, 64):
        a = agg.get(("mod_aiproxy", conc))
        if a and a["vs_proxy"] is not None:
            out.append("- mod_aiproxy at ≥ 70%% (stretch 90%%) of httpd proxy's req/s at c=%d: "
                       "**%.0f%%** — %s" % (conc, 100 * a["vs_proxy"],
                                            "met" if a["vs_proxy"] >= 0.7 else "not met"))
    a1, p1 = agg.get(("mod_aiproxy", 1)), agg.get(("httpd-proxy", 1))
    if a1 and p1 and a1["added_p50"] is not None and p1["added_p50"] is not None:
        over = a1["added_p50"] - p1["added_p50"]
        out.append("- added p50 over plain mod_proxy at c=1 ≤ 0.2 ms: **%.3f ms** — %s" % (
            over, "met" if over <= 0.2 else "not met"))
    rt = res.get("store_round_trips")
    if rt and rt.get("round_trips_per_request") is not None:
        out.append("- store round trips per request ≤ 0.05: **%s** — %s" % (
            rt["round_trips_per_request"],
            "met" if rt["round_trips_per_request"] <= 0.05 else "not met"))
    peers = [n for n in ("portkey", "litellm") if res["targets"].get(n, {}).get("status") == "ok"]
    behind = []
    for n in peers:
        for conc in res["config"]["conc"]:
            me, them = agg.get(("mod_aiproxy", conc)), agg.get((n, conc))
            if not me or not them:
                continue
            if me["rps"] < them["rps"]:
                behind.append("%s req/s at c=%d" % (n, conc))
            if me["added_p50"] is not None and them["added_p50"] is not None and \
                    me["added_p50"] > them["added_p50"]:
                behind.append("%s added p50 at c=%d" % (n, conc))
    missing = [n for n in ("portkey", "litellm") if n not in peers]
    out.append("- ahead of every peer on req/s and added latency: %s%s" % (
        "**met**" if not behind else "**not met** (behind: %s)" % ", ".join(behind),
        (" (not run: %s)" % ", ".join(missing)) if missing else ""))
    out.append("")
    return out


def report(res):
    m = res["machine"]
    lines = ["## mod_aiproxy benchmark — %s mode, %s" % (res["mode"], res["started"]), "",
             "Machine: %s CPUs (%s, %s MHz), %s GiB memory, Linux %s. %s." % (
                 m.get("nproc"), m.get("cpu"), m.get("cpu_mhz"), m.get("memory_gib"),
                 m.get("kernel"), (lambda x: x[:1].upper() + x[1:])(m.get("pinning") or "")),
             "Software: httpd %s (event MPM), wrk %s, node %s, Portkey gateway %s, "
             "LiteLLM %s, Java %s (store: mongo-java-server, in memory); mod_aiproxy at %s (%s)." % (
                 m.get("httpd"), m.get("wrk"), m.get("node"), m.get("portkey"), m.get("litellm"),
                 m.get("java"), m.get("commit"), m.get("worktree")), ""]
    if res["mode"] in ("quick", "full"):
        c = res["config"]
        lines += ["Median of %d round(s) of %d s per figure (after %d s warm-up); ratios and "
                  "added latency taken within a round. Body: a %d-byte chat request, "
                  "max_tokens 16; upstream answer %d bytes with usage." % (
                      c["rounds"], c["duration"], c["warmup"], len(json.dumps(CHAT)), 553), ""]
        lines += table(res, "runs", "Non-streaming chat, upstream answering at once")
        lines += ["Gateway CPU %: CPU time of the gateway's processes over the run, 100 = one "
                  "core (the gateway is pinned to one); \"+store\" is the local store's, which "
                  "shares the other core with wrk and the upstream. Other load %: CPU used "
                  "during the run by processes outside the benchmark (the machine is shared), "
                  "in % of one core.", ""]
        lines += table(res, "delay_runs", "Non-streaming chat, upstream answering after %d ms"
                       % c["delay_ms"])
        lines += stream_table(res)
        rt = res.get("store_round_trips")
        if rt:
            lines += ["Store round trips per mod_aiproxy request (counted on the wire by "
                      "bench/tools/storecount over %d requests): **%s** — %s." % (
                          rt["requests"], rt["round_trips_per_request"],
                          ", ".join("%s %s" % kv for kv in rt["per_request"].items())), ""]
        if res.get("ledger"):
            lg = res["ledger"]
            lines += ["Ledger after the run: %d requests settled, %d request records, "
                      "%d open holds, reserved %d." % (lg["requests"], lg["request_records"],
                                                       lg["open_holds"], lg["reserved"]), ""]
        lines += ["### Targets", "", "| target | status | configuration |", "|---|---|---|"]
        for n, t in res["targets"].items():
            lines.append("| %s | %s | %s |" % (n, t["status"] if t["status"] == "ok" else
                                              "not run: " + (t["why"] or "?").replace("|", "/")
                                              .replace("\n", " ")[:200], t["note"]))
        lines.append("")
        lines += goals(res)
    elif res["mode"] == "soak":
        w = res.get("wrk", {})
        lg = res.get("ledger", {})
        lines += ["### Soak: %d requests through mod_aiproxy at c=%d" % (
            res["config"]["requests"], res["config"]["conc"]), "",
            "| figure | value |", "|---|--:|",
            "| requests answered (upstream count) | %s |" % res.get("upstream_requests"),
            "| wall time s | %s |" % res.get("seconds"),
            "| req/s | %s |" % fmt(w.get("rps")),
            "| p50 / p99 ms | %s / %s |" % (fmt(w.get("latency_ms", {}).get("p50"), "%.3f"),
                                           fmt(w.get("latency_ms", {}).get("p99"), "%.3f")),
            "| wrk errors (connect/read/write/status/timeout) | %s |" % "/".join(
                str(w.get("errors", {}).get(k, "?")) for k in
                ("connect", "read", "write", "status", "timeout")),
            "| error.log errors | %s |" % res.get("error_log", {}).get("errors"),
            "| httpd RSS before (after warm-up) MiB | %s (%s processes) |" % (
                fmt(res.get("rss_before_kb", 0) / 1024, "%.1f"), res.get("procs_before")),
            "| httpd RSS half-way MiB | %s |" % fmt(res.get("rss_mid_kb") and
                                                   res["rss_mid_kb"] / 1024, "%.1f"),
            "| httpd RSS after MiB | %s (%s processes) |" % (
                fmt(res.get("rss_after_kb", 0) / 1024, "%.1f"), res.get("procs_after")),
            "| store RSS before / after MiB | %s / %s |" % (
                fmt(res.get("store_rss_before_kb", 0) / 1024, "%.0f"),
                fmt(res.get("store_rss_after_kb", 0) / 1024, "%.0f")),
            "| ledger: settled / records / open holds / reserved | %s / %s / %s / %s |" % (
                lg.get("requests"), lg.get("request_records"), lg.get("open_holds"),
                lg.get("reserved")),
            ""]
    elif res["mode"] == "profile":
        cg = res.get("callgrind", {})
        if "inclusive" in cg:
            base = res.get("callgrind_proxy", {}).get("instructions_per_request")
            lines += ["### callgrind: httpd -X, %d requests at c=1: %s instructions per request"
                      "%s" % (cg["requests"], "{:,}".format(cg["instructions_per_request"] or 0),
                              " (plain mod_proxy: %s, so mod_aiproxy adds %s)" % (
                                  "{:,}".format(base), "{:,}".format(
                                      cg["instructions_per_request"] - base)) if base else ""),
                      "",
                      "Collected inside ap_run_process_connection (request in, hooks, filters, "
                      "response out, access log). Inclusive cost:", "",
                      "| function | file or object | Ir per request | % |", "|---|---|--:|--:|"]
            seen = set()
            for r in cg["inclusive"]:
                if r["function"] in seen or not re.match(
                        r"(aiproxy_|settle$|mongoc_|_mongoc_cluster_stream|bson_|json_loadb|"
                        r"jwt_|proxy_|ap_proxy|ap_process|ap_invoke|ap_run_fixups|"
                        r"ap_run_log|ap_pass_brigade|ap_core_output|ap_read_request)",
                        r["function"]):
                    continue
                seen.add(r["function"])
                lines.append("| %s | %s | %s | %s |" % (r["function"], r["object"],
                                                       "{:,}".format(r["ir_per_request"]),
                                                       r["pct"]))
                if len(seen) >= 40:
                    break
            lines += ["", "Top self cost (stripped libraries show addresses):", "",
                      "| function | object | Ir per request | % |", "|---|---|--:|--:|"]
            for r in cg["self"][:15]:
                lines.append("| %s | %s | %s | %s |" % (r["function"], r["object"],
                                                       "{:,}".format(r["ir_per_request"]),
                                                       r["pct"]))
            lines.append("")
        elif cg:
            lines += ["callgrind: %s" % cg.get("error"), ""]
        pf = res.get("perf", {})
        if "by_object" in pf:
            lines += ["### perf (cpu-clock, DWARF call graphs) on the gateway's CPU, c=%d, "
                      "%s req/s" % (res["config"]["perf_conc"], fmt(pf.get("wrk", {}).get("rps"))),
                      "", "CPU %s's time by command: %s." % (
                          GW_CPUS or "all", ", ".join("%s %.1f%%" % (r["object"], r["pct"])
                                                      for r in pf.get("by_command", [])[:5])),
                      "", "httpd's own time by object: %s." % ", ".join(
                          "%s %.1f%%" % (r["object"], r["pct"]) for r in pf["by_object"][:12]),
                      "", "Inclusive share of httpd's CPU time (selected functions):", "",
                      "| % incl. | % self | function |", "|--:|--:|---|"]
            for r in pf.get("inclusive", [])[:35]:
                lines.append("| %.1f | %.1f | %s |" % (r["pct"], r["self_pct"], r["symbol"]))
            lines += ["", "Top self time:", "", "| % | object | symbol |", "|--:|---|---|"]
            for r in pf["by_symbol"][:15]:
                lines.append("| %.1f | %s | %s |" % (r["pct"], r["object"], r["symbol"]))
            lines.append("")
    if res.get("aborted"):
        lines += ["**Stopped early: %s** (figures above are partial)." % res["aborted"], ""]
    return "\n".join(lines)


def check_mpm_in_step():
    """bench/conf/proxy.conf must use conf/httpd.conf's MPM settings."""
    def block(path):
        text = open(path).read()
        m = re.search(r"<IfModule mpm_event_module>.*?</IfModule>\s*KeepAlive.*?Timeout \d+",
                      text, re.S)
        return re.sub(r"\s+", " ", m.group(0)) if m else None
    a = block(os.path.join(ROOT, "conf/httpd.conf"))
    b = block(os.path.join(BENCH, "conf/proxy.conf"))
    if a != b:
        sys.exit("bench: bench/conf/proxy.conf's MPM settings differ from conf/httpd.conf's; "
                 "update it:\n  conf/httpd.conf: %s\n  proxy.conf:     %s" % (a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma-separated subset of " + ",".join(TARGETS))
    ap.add_argument("--out", help="JSON output (default bench/results/latest-MODE.json)")
    a = ap.parse_args()
    names = [n for n in a.targets.split(",") if n]
    for n in names:
        if n not in CLASSES:
            sys.exit("bench: unknown target %s" % n)
    check_mpm_in_step()
    cfg = MODES[a.mode]
    started = datetime.datetime.now(datetime.timezone.utc)
    deadline = time.time() + cfg["budget"]
    var = tempfile.mkdtemp(prefix="aiproxy-bench-")
    os.chmod(var, 0o755)
    log("mode %s, work dir %s, %s" % (a.mode, var, PIN_NOTE))
    module_sha = snapshot_module(var)

    # Any signal: stop cleanly so that no process we started is left behind.
    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    # The hard bound: whatever happens, this process ends a while after the
    # budget (a stuck child is killed by its Proc.stop on the way out).
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(cfg["budget"]) + 300)
    try:
        if a.mode in ("quick", "full"):
            res = run_bench(a.mode, names, var, deadline)
        elif a.mode == "soak":
            res = run_soak(var, deadline)
        else:
            res = run_profile(var, deadline)
    finally:
        signal.alarm(0)
    res["started"] = started.strftime("%Y-%m-%d %H:%M UTC")
    res["elapsed_s"] = round(time.time() - started.timestamp(), 1)
    res["machine"] = machine()
    res["machine"]["module_sha256"] = module_sha
    os.makedirs(os.path.join(RESULTS, "history"), exist_ok=True)
    out = a.out or os.path.join(RESULTS, "latest-%s.json" % a.mode)
    text = json.dumps(res, indent=1, default=str)
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "history", "%s-%s.json" % (
            started.strftime("%Y%m%dT%H%M%S"), a.mode)), "w") as f:
        f.write(text)
    md = report(res)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    log("results in %s (%.0f s)" % (os.path.relpath(out, ROOT), res["elapsed_s"]))
    shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
