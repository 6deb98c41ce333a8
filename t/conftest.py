"""The integration harness: a local store (or MONGODB_URI), the fake
upstream, and real httpd with mod_aiproxy, all on loopback."""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import jwt
import pymongo
import pytest
from bson import Int64

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema"))
import apply as schema_apply  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from loopback import free_port, wait_port  # noqa: E402,F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0
APACHE = "/usr/sbin/apache2"

# AIPROXY_SANITIZE=1: httpd loads build/asan/mod_aiproxy.so and the CLI
# tests run build/asan/aiproxy-admin (make -f Makefile.apxs asan), and any
# sanitizer report fails the test that was running (sanitizer_check below).
SANITIZE = os.environ.get("AIPROXY_SANITIZE", "") not in ("", "0")
BUILD = os.path.join(ROOT, "build", "asan") if SANITIZE else os.path.join(ROOT, "build")

# One secret and one provider key per session; every log and response is
# searched for them (t/test_secrets.py).
TOKEN_SECRET = "tsecret-" + secrets.token_hex(24)
PROVIDER_KEY = "sk-upstream-" + secrets.token_hex(16)
ANTHROPIC_KEY = "sk-ant-upstream-" + secrets.token_hex(16)
ADMIN = "admin@example.com"


def make_token(email="student@example.com", secret=None, alg="HS256", **claims):
    body = {"email": email, "iat": int(time.time()) - 1}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret or TOKEN_SECRET, algorithm=alg)


def make_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


class Store:
    def __init__(self):
        self.dir = None
        self.uri = os.environ.get("MONGODB_URI")
        self.local = not self.uri
        self.port = None

    def start(self):
        if self.local:
            self.dir = make_tmpdir("aiproxy-store-")
            self.port = free_port()
            subprocess.run([os.path.join(ROOT, "tools/store.sh"), "start",
                            self.dir, str(self.port), "--memory"], check=True,
                           stdout=subprocess.DEVNULL)
            self.uri = "mongodb://127.0.0.1:%d" % self.port
        return self

    def stop(self):
        if self.local and self.dir:
            subprocess.run([os.path.join(ROOT, "tools/store.sh"), "stop", self.dir],
                           check=False, stdout=subprocess.DEVNULL)

    def restart(self):
        """Stops and starts the local store on the same port (data lost)."""
        assert self.local, "needs the local store"
        self.stop()
        subprocess.run([os.path.join(ROOT, "tools/store.sh"), "start",
                        self.dir, str(self.port), "--memory"], check=True,
                       stdout=subprocess.DEVNULL)

    def client(self):
        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000)


class Upstream:
    """The fake provider (t/fake_upstream.py) in its own process."""

    def __init__(self, name="openai"):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "t/fake_upstream.py"), "--port", "0",
             "--name", name], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", "fake upstream did not start"
        self.port = int(line[1])
        self.base = "http://127.0.0.1:%d" % self.port

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def requests(self):
        return self._call("GET", "/__requests")

    def reset(self):
        self._call("POST", "/__reset", {})

    def next(self, **controls):
        """Steers the next requests: next(status=500, count=2)."""
        controls.setdefault("count", 1)
        self._call("POST", "/__control/next", controls)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------ error-log check
#
# After every test, each gateway started so far has its error log read from
# where the previous check stopped; a line at a checked level fails the test
# unless the test declared it: @pytest.mark.expect_log(r"AIP01201", ...)
# on the test or its module, or gateway.expect_log(regex) within the test.
LOG_LEVELS_CHECKED = ("emerg", "alert", "crit", "error", "warn")
LOG_LINE = re.compile(r"^\[[^\]]*\] \[(?:[\w.-]*:)?(\w+)\]")
# Not ours, tolerated wherever they show: the event MPM's child dying on
# shutdown right after start; Debian's mod_ssl built against a newer
# OpenSSL than the one loaded; no SSLSessionCache for upstream TLS (the
# shipped conf/httpd.conf has none); the event MPM closing a socket
# already closed as a child stops (seen once with mod_auth_openidc loaded).
LOG_TOLERATED = [re.compile(x) for x in (
    r"AH00052: child pid \d+ exit signal Segmentation fault",
    r"\(9\)Bad file descriptor: AH00468: error closing socket",
    r"AH01882: Init: this version of mod_ssl was compiled against a newer library",
    r"AH01873: Init: Session Cache is not configured",
)]


def log_problems(text, expected):
    """The lines of an error-log excerpt that fail a test: at a checked
    level, neither tolerated nor expected. Further per-line checks (e.g.
    sanitizer reports) belong here."""
    bad = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m or m.group(1) not in LOG_LEVELS_CHECKED:
            continue
        if any(rx.search(line) for rx in LOG_TOLERATED + expected):
            continue
        bad.append(line)
    return bad


# The tests' own gateway configuration, in place of the development one.
TEST_CONF = os.path.join(ROOT, "t/conf/aiproxy.conf")
DEV_INCLUDE = 'Include "${AIPROXY_ROOT}/conf/aiproxy.conf"'


def httpd_conf(site_conf=TEST_CONF):
    """conf/httpd.conf (the server: modules, limits, logs) including
    site_conf where it includes the development conf/aiproxy.conf."""
    with open(os.path.join(ROOT, "conf/httpd.conf")) as f:
        text = f.read()
    assert text.count(DEV_INCLUDE) == 1, "conf/httpd.conf: no line " + DEV_INCLUDE
    return text.replace(DEV_INCLUDE, 'Include "%s"' % site_conf)


def www_dir(var):
    """The dashboard's files as httpd serves them: admin/www itself, or, as
    root, a copy under the gateway's directory that its user can read."""
    src = os.path.join(ROOT, "admin/www")
    if not IS_ROOT:
        return src
    dst = os.path.join(var, "www")
    if not os.path.isdir(dst):
        shutil.copytree(src, dst)
        for d, _, files in os.walk(dst):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
    return dst


def sanitizer_env(var):
    """The environment httpd needs to run the ASan module. httpd itself is
    not instrumented, so libasan must be preloaded and leak checks are off
    (httpd's own allocations would be reported). Reports go to files in the
    gateway's directory, which the children (user aiproxy) can write; every
    first error stops its process. httpd installs its own SIGSEGV handler,
    which would turn a crash in the module into a bare "exit signal" line:
    allow_user_segv_handler=0 keeps ASan's, which prints the stack."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                             capture_output=True, text=True).stdout.strip()
    return {
        "LD_PRELOAD": os.path.realpath(libasan),
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0:"
                        "allow_user_segv_handler=0:handle_abort=1:"
                        "log_path=" + os.path.join(var, "asan"),
        # UBSan starts at its first report, in a child, and writes to
        # stderr, which is error.log (error_log_reports), log_path or not.
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


# Every gateway's directory, searched for sanitizer logs after each test.
SANITIZER_DIRS = []
SANITIZER_SEEN = set()
SANITIZER_LOG_DONE = {}
SANITIZER_IGNORED = []


def is_httpd_crash(report):
    """httpd's event MPM now and then dies of SIGSEGV as a child exits right
    after start (in mod_mpm_event, apr_os_sock_get; not our code). Such a
    deadly signal with no frame in the module is noted, not failed; any
    other report (overflow, use after free, undefined behaviour) fails even
    without our frames, since only the module is instrumented."""
    deadly = re.search(r"ERROR: AddressSanitizer: (SEGV|BUS|ABRT|FPE|ILL|"
                       r"stack-overflow)\b", report)
    frames = re.findall(r"^\s*#\d+ .*", report, re.M)
    ours = any(re.search(r"mod_aiproxy|aiproxy_", f) for f in frames)
    # No stack (cut short) is not evidence of innocence.
    return bool(deadly) and bool(frames) and not ours


def error_log_reports(d):
    """Sanitizer reports in a gateway's error.log (httpd's stderr) since the
    last look, as (where, text). UBSan writes there; so would anything
    else that misses its file. A report runs from its first line to a blank
    line."""
    path = os.path.join(d, "error.log")
    if not os.path.exists(path):
        return []
    done = SANITIZER_LOG_DONE.get(path, 0)
    with open(path, "rb") as f:
        f.seek(done)
        data = f.read()
    data = data[:data.rfind(b"\n") + 1]  # whole lines only
    SANITIZER_LOG_DONE[path] = done + len(data)
    found, cur = [], None
    for line in data.decode(errors="replace").splitlines():
        if re.match(r"\[\w{3} \w{3} ", line):
            continue  # httpd's own lines come between a report's lines
        if re.search(r"runtime error:|ERROR: AddressSanitizer", line):
            cur = [line]
            found.append(("%s, from byte %d" % (path, done), cur))
        elif cur is not None and line.strip():
            cur.append(line)
        else:
            cur = None
    return [(where, "\n".join(lines)) for where, lines in found]


def sanitizer_reports():
    """Reports that appeared since the last call, as (where, text)."""
    found = []
    for d in SANITIZER_DIRS:
        if not os.path.isdir(d):
            continue
        reports = error_log_reports(d)
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if not name.startswith("asan.") or path in SANITIZER_SEEN:
                continue
            SANITIZER_SEEN.add(path)
            with open(path, errors="replace") as f:
                reports.append((path, f.read()))
        for where, text in reports:
            if is_httpd_crash(text):
                SANITIZER_IGNORED.append(where)
            else:
                found.append((where, text))
    return found


def fail_on_sanitizer_reports():
    found = sanitizer_reports()
    if found:
        pytest.fail("sanitizer report(s):\n" + "\n".join(
            "== %s\n%s" % (p, t) for p, t in found), pytrace=False)


# One check per test, per module and per session, so a report from a
# gateway stopped at any of those ends is charged to a test near it.
@pytest.fixture(autouse=True)
def sanitizer_check():
    yield
    if SANITIZE:
        fail_on_sanitizer_reports()


@pytest.fixture(scope="module", autouse=True)
def sanitizer_check_module():
    yield
    if SANITIZE:
        fail_on_sanitizer_reports()


@pytest.fixture(scope="session", autouse=True)
def sanitizer_check_session():
    if SANITIZE:
        # Up to date in a second when nothing changed.
        p = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "asan"], cwd=ROOT,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    yield
    if SANITIZE:
        fail_on_sanitizer_reports()


def pytest_terminal_summary(terminalreporter):
    if SANITIZE:
        terminalreporter.write_line(
            "sanitizer: module built with ASan/UBSan; %d httpd crash report(s) "
            "without module frames ignored%s" % (
                len(SANITIZER_IGNORED),
                "".join("\n  " + p for p in SANITIZER_IGNORED)))


class Gateway:
    """Real httpd with mod_aiproxy: conf/httpd.conf on t/conf/aiproxy.conf,
    plus a test's extra configuration."""

    started = []    # every gateway started, for the error-log check

    def __init__(self, store, upstream, extra_conf="", env=None, db=None,
                 loglevel="debug", anthropic=None):
        self.log_expected_now = []   # this test only (expect_log())
        self.log_checked = 0         # error-log offset checked so far
        self.store = store
        self.upstream = upstream
        self.var = make_tmpdir("aiproxy-httpd-")
        os.makedirs(os.path.join(self.var, "conf.d"))
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.db_name = db or "t_" + secrets.token_hex(6)
        self.env = dict(os.environ)
        self.env.update({
            "AIPROXY_ROOT": ROOT,
            "AIPROXY_VAR": self.var,
            "AIPROXY_WWW": www_dir(self.var),
            "AIPROXY_LISTEN": "127.0.0.1:%d" % self.port,
            "AIPROXY_STORE": store.uri,
            "AIPROXY_DB": self.db_name,
            "AIPROXY_LOGLEVEL": loglevel,
            "AIPROXY_ADMINS": ADMIN,
            "AIPROXY_REGION": "test-region",
            "AIPROXY_TOKEN_SECRET": TOKEN_SECRET,
            "OPENAI_BASE_URL": upstream.base + "/v1",
            "OPENAI_API_KEY": PROVIDER_KEY,
            "ANTHROPIC_BASE_URL": (anthropic or upstream).base + "/v1",
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        })
        env = dict(env or {})
        if SANITIZE:
            self.env.update(sanitizer_env(self.var))
            SANITIZER_DIRS.append(self.var)
            if "LD_PRELOAD" in env:
                # A test's own preload (libfaketime) goes first: httpd does
                # not start with it after libasan. It defines no allocator,
                # so ASan's still wins and its order check can be waived.
                env["LD_PRELOAD"] += ":" + self.env["LD_PRELOAD"]
                env["ASAN_OPTIONS"] = self.env["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
        self.env.update(env)
        self.extra_conf = extra_conf
        self.conf = os.path.join(self.var, "httpd.conf")
        self.proc = None

    def write_conf(self, text, site_conf=TEST_CONF):
        """The gateway's httpd.conf (conf/httpd.conf on the tests' own
        site configuration) and the test's extra lines, read after both."""
        with open(self.conf, "w") as f:
            f.write(httpd_conf(site_conf))
        with open(os.path.join(self.var, "conf.d", "extra.conf"), "w") as f:
            f.write(text)

    def args(self):
        a = [APACHE, "-f", self.conf]
        if IS_ROOT:
            a += ["-D", "AIPROXY_AS_ROOT"]
        if SANITIZE:
            a += ["-D", "AIPROXY_SANITIZE"]
        return a

    def configtest(self):
        """apachectl -t: (exit status, output)."""
        self.write_conf(self.extra_conf)
        p = subprocess.run(self.args() + ["-t"], env=self.env, capture_output=True,
                           text=True)
        return p.returncode, p.stdout + p.stderr

    def expect_log(self, *patterns):
        """Declares error-log lines the current test means to cause."""
        self.log_expected_now += [re.compile(x) for x in patterns]

    def check_log(self, expected=()):
        """The unexpected lines logged since the last check; moves on."""
        p = os.path.join(self.var, "error.log")
        if not os.path.exists(p):
            return []
        with open(p, "rb") as f:
            f.seek(self.log_checked)
            data = f.read()
        self.log_checked += len(data)
        bad = log_problems(data.decode(errors="replace"),
                           self.log_expected_now + list(expected))
        self.log_expected_now = []
        return bad

    def start(self):
        if self not in Gateway.started:
            Gateway.started.append(self)
        schema_apply.apply(self.store.uri, self.db_name)
        self.write_conf(self.extra_conf)
        if IS_ROOT:
            shutil.chown(self.var, "aiproxy")
        self.proc = subprocess.Popen(self.args() + ["-D", "FOREGROUND"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        if not wait_port(self.port, proc=self.proc):
            out = self.proc.stdout.read() if self.proc.poll() is not None else ""
            raise RuntimeError("httpd did not start: %s\n%s" % (out, self.error_log()))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def children(self):
        """The pids of httpd's children (self.proc is the parent)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def kill_child(self, pid):
        """kill -9 of one child; the parent lives on and starts another."""
        assert pid in self.children(), "%d is not a child of this httpd" % pid
        os.kill(pid, signal.SIGKILL)

    def kill(self):
        """kill -9 of the whole httpd. The parent is stopped first so that it
        starts no child, then every process is frozen, then killed: none
        gets to clean up, flush or write anything."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        pids = self.children()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in pids + [self.proc.pid]:
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self):
        """with Gateway(...) as g: started, and stopped at the end."""
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path):
        return self.base + path

    @property
    def openai_base(self):
        return self.base + "/openai/v1"

    def db(self):
        """The gateway's database, once its request records are written."""
        self.wait_records()
        return self.store.client()[self.db_name]

    def wait_records(self, timeout=10):
        """Each child writes request records from a queue, just after the
        response: wait until /api/stats shows none pending. Returns at once
        when the gateway is not running or cannot tell (store down)."""
        if not self.proc or self.proc.poll() is not None:
            return
        deadline = time.time() + timeout
        headers = {"Authorization": "Bearer " + make_token(ADMIN)}
        while time.time() < deadline:
            req = urllib.request.Request(self.url("/api/stats"), headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if json.load(r).get("records_pending", 0) == 0:
                        return
            except (OSError, ValueError):
                return
            time.sleep(0.01)
        raise AssertionError("request records still pending after %ss" % timeout)

    def error_log(self):
        p = os.path.join(self.var, "error.log")
        return open(p, errors="replace").read() if os.path.exists(p) else ""

    def access_log(self):
        p = os.path.join(self.var, "access.log")
        return open(p, errors="replace").read() if os.path.exists(p) else ""

    def set_cap(self, who, pico):
        """Cap for an email or "@domain", in pico-dollars."""
        self.db().users.update_one({"_id": who}, {"$set": {"cap": Int64(pico)}},
                                   upsert=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "expect_log(*regex): error-log lines at "
                            "warn or above that this test causes on purpose")


@pytest.fixture(autouse=True)
def error_log_check(request):
    """Fails a test that left an undeclared warning or error in the error
    log of any gateway (pyhttpd's check). Autouse, so set up first and torn
    down last: gateways the test started are stopped by then."""
    # A gateway stopped between tests (a module's fixture) is done with.
    Gateway.started[:] = [g for g in Gateway.started if g.proc and g.proc.poll() is None]
    yield
    expected = [re.compile(x) for m in request.node.iter_markers("expect_log")
                for x in m.args]
    problems = []
    for g in list(Gateway.started):
        problems += ["%s: %s" % (g.var, line) for line in g.check_log(expected)]
    if problems:
        pytest.fail("unexpected error-log lines (declare with expect_log):\n"
                    + "\n".join(problems[:20]), pytrace=False)


@pytest.fixture(scope="session")
def store():
    s = Store().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def upstream():
    with Upstream() as u:
        yield u


@pytest.fixture(scope="session")
def gateway(store, upstream):
    with Gateway(store, upstream) as g:
        yield g


@pytest.fixture
def up(upstream):
    """The session's upstream, reset before the test."""
    upstream.reset()
    return upstream


@pytest.fixture
def make_gateway(store, upstream):
    """Starts extra gateways with their own configuration; stopped after."""
    made = []

    def factory(extra_conf="", **kw):
        g = Gateway(store, kw.pop("upstream", upstream), extra_conf=extra_conf, **kw)
        made.append(g)
        return g

    yield factory
    for g in made:
        g.stop()


@pytest.fixture
def toxiproxy(store):
    """Toxiproxy with a proxy "store" to the session's store (t/toxiproxy.py);
    its .store is that store as reached through the proxy."""
    from toxiproxy import Toxiproxy
    tp = Toxiproxy()
    tp.store = tp.proxy_store(store)
    if tp.store is None:
        tp.stop()
        pytest.skip("the store's URI names several servers or SRV: not proxied")
    yield tp
    tp.stop()


@pytest.fixture
def make_toxic_gateway(toxiproxy, upstream):
    """Like make_gateway, the gateway's store reached through toxiproxy."""
    made = []

    def factory(extra_conf="", **kw):
        g = Gateway(toxiproxy.store, kw.pop("upstream", upstream),
                    extra_conf=extra_conf, **kw)
        made.append(g)
        return g

    yield factory
    for g in made:
        g.stop()


@pytest.fixture
def token():
    return make_token


def load_prices():
    """conf/prices.conf as {model: {field: pico-dollars per token}}, read the
    same way a reviewer reads it, so tests never hard-code a result."""
    from decimal import Decimal
    prices = {}
    for line in open(os.path.join(ROOT, "conf/prices.conf")):
        words = line.split()
        if len(words) < 2 or words[0] != "AIProxyPrice":
            continue
        fields = dict(w.split("=", 1) for w in words[2:])
        # Limits are token counts; prices USD per 1M tokens, as pico per token.
        p = {k: (v == "yes") if k == "reasoning"
             else int(v) if k in ("max_output", "context", "image")
             else int(Decimal(v) * 1000000) for k, v in fields.items()}
        # Media models (images, audio) may have no token price.
        p.setdefault("input", 0)
        p.setdefault("cached", p["input"])
        p.setdefault("cache_write", 0)
        p.setdefault("output", 0)
        prices[words[1]] = p
    return prices


PRICES = load_prices()


def usd(pico):
    """Pico-dollars as the gateway's USD decimal string."""
    from decimal import Decimal
    s = format(Decimal(pico) / Decimal(10**12), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def curl_raw(gateway, path, token=None, method=None, body=None, headers=(),
             args=(), auth_header=None):
    """curl against the gateway: (status, raw header text, body bytes)."""
    with tempfile.TemporaryDirectory() as d:
        hfile, bfile = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = ["curl", "-sS", "-o", bfile, "-D", hfile, "-w", "%{http_code}",
               "--max-time", "20"] + list(args)
        if method:
            cmd += ["-X", method]
        if auth_header is not None:
            cmd += ["-H", "Authorization: " + auth_header]
        elif token is not None:
            cmd += ["-H", "Authorization: Bearer " + token]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            dfile = os.path.join(d, "d")
            with open(dfile, "wb") as f:
                f.write(body)
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@" + dfile]
        cmd.append(gateway.url(path))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        with open(hfile, "rb") as f:
            head = f.read().decode("latin-1")
        with open(bfile, "rb") as f:
            return int(p.stdout), head, f.read()


def curl(gateway, path, *args, **kw):
    """curl against the gateway: (status, {lower header: value}, body bytes)."""
    status, head, body = curl_raw(gateway, path, *args, **kw)
    hdrs = {}
    last = [b for b in head.split("\r\n\r\n") if b.strip()][-1]
    for line in last.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


# ------------------------------------------------------------ run summary

def _part(nodeid):
    if "test_c_units.py::test_unit_tests" in nodeid:
        return "C units"
    if "::test_fuzz_corpus_replays" in nodeid:
        return "fuzz replay"
    if "::test_fuzz_briefly" in nodeid:
        return "fuzz runs"
    return "integration"


def summary_lines(reports):
    """One line per part of the run (C units, fuzz replays, fuzz runs,
    integration tests) from the tests' reports: what ran, and how it went."""
    outcome, props = {}, {}
    for r in reports:
        # A test's worst phase decides; a setup skip or error counts too.
        o = "error" if r.failed and r.when != "call" else r.outcome
        rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
        if rank[o] >= rank.get(outcome.get(r.nodeid), -1):
            outcome[r.nodeid] = o
        for k, v in getattr(r, "user_properties", ()):
            props.setdefault(k, {})[r.nodeid] = v
    parts = {}
    for nodeid, o in outcome.items():
        counts = parts.setdefault(_part(nodeid), {})
        counts[o] = counts.get(o, 0) + 1

    def tally(name):
        c = parts.get(name)
        if not c:
            return "not run"
        return ", ".join("%d %s" % (c[k], k) for k in ("passed", "failed", "error", "skipped")
                         if c.get(k))

    lines = []
    checks = sum(props.get("unit_checks", {}).values())
    c = parts.get("C units")
    lines.append("C units: " + ("%d checks passed" % checks if c and c == {"passed": 1}
                                else tally("C units")))
    inputs = sum(props.get("fuzz_inputs", {}).values())
    lines.append("fuzz replay: %s%s" % (tally("fuzz replay"), ", %d inputs replayed under "
                                        "ASan/UBSan" % inputs if inputs else ""))
    execs = sum(props.get("fuzz_execs", {}).values())
    lines.append("fuzz runs: %s%s" % (tally("fuzz runs"), ", %d executions" % execs
                                      if execs else ""))
    lines.append("integration: " + tally("integration"))
    return lines


def pytest_terminal_summary(terminalreporter):
    reports = [r for k in ("passed", "failed", "skipped", "error")
               for r in terminalreporter.stats.get(k, []) if hasattr(r, "nodeid")]
    terminalreporter.write_sep("-", "what ran")
    for line in summary_lines(reports):
        terminalreporter.write_line(line)
