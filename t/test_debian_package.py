"""The Debian package end to end on this machine: built from the tree (a
copy, so the checkout stays clean), installed with apt, enabled with
a2enmod/a2ensite, served by Debian's own apache2 (/etc/apache2, apache2ctl)
behind mod_ssl (a throwaway CA and certificate) and HTTP/2 on a loopback port,
driven with the openai SDK, then purged: nothing of it may be left, and the
machine's apache2 configuration is as it was.

It needs root (dpkg, /etc/apache2) and runs in the plain pass only: the
package ships the normal build, not the sanitized one. Other tests are not
disturbed: they run their own httpd from the tree on configurations of their
own; this one binds only 127.0.0.1 on a free port. A Debian apache2 that
was running (its package starts it under systemd) is stopped for the test
and started again after it."""
import fcntl
import glob
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time

import httpx
import openai
import pytest

from conftest import (ADMIN, IS_ROOT, PROVIDER_KEY, ROOT, SANITIZE, free_port, log_problems,
                      wait_port)
from helpers import chat_cost

PKG = "libapache2-mod-aiproxy"
ETC = "/etc/apache2"
PORTS = ETC + "/ports.conf"
PIDFILE = "/var/run/apache2/apache2.pid"
MODULE = "/usr/lib/apache2/modules/mod_aiproxy.so"
SITE_LOG = "/var/log/apache2/aiproxy-error.log"
MAIN_LOG = "/var/log/apache2/error.log"
# Where the package's files and state could be left behind (not
# /var/lib/aiproxy: tools/run's, which another checkout may be running).
SEARCHED = ["/etc", "/usr", "/var/lib/apache2", "/var/lib/dpkg/info", "/var/log/apache2",
            "/var/cache/apt/archives", "/run/apache2", "/run/lock/apache2"]
MSG = [{"role": "user", "content": "hello there world"}]   # 3 words; the reply 5
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
APT = ["apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]


def status(pkg=PKG):
    """dpkg's status words of the package ([] when dpkg does not know it)."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                       text=True)
    return p.stdout.split() if p.returncode == 0 else []


def installed():
    return status()[-1:] == ["installed"]


def known():
    """Installed, or removed with its configuration still there."""
    return status()[-1:] not in ([], ["not-installed"])


def apache_pid():
    """The pid of Debian's apache2 (apache2ctl's pidfile), if it runs."""
    try:
        pid = int(open(PIDFILE).read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def why_skip():
    if not IS_ROOT:
        return "installs a package and configures /etc/apache2: needs root (CI runs as root)"
    if SANITIZE:
        return "the package ships the normal build: tested in the plain pass only"
    if not shutil.which("dpkg-buildpackage") or not shutil.which("lintian"):
        return "dpkg-dev and lintian missing: run tools/setup.sh --test"
    if known():
        return PKG + " is on this machine already: not ours to purge"
    return None


pytestmark = pytest.mark.skipif(why_skip() is not None, reason=why_skip() or "")


def run(cmd, timeout=300, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, "%s: %s%s" % (" ".join(cmd), p.stdout, p.stderr)
    return p


def tree(path):
    """Every file, link and directory under path."""
    out = set()
    for d, dirs, files in os.walk(path):
        out.update(os.path.join(d, x) for x in dirs + files)
    return out


def named_aiproxy():
    """Paths in SEARCHED whose name says aiproxy."""
    found = set()
    for top in SEARCHED:
        for d, dirs, files in os.walk(top):
            found.update(os.path.join(d, x) for x in dirs + files if "aiproxy" in x)
    return found


def mapping_module():
    """Processes that have the packaged module mapped."""
    pids = []
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            if MODULE in open(maps).read():
                pids.append(int(maps.split("/")[2]))
        except OSError:
            pass
    return pids


def stop_apache(timeout=20):
    pid = apache_pid()
    if not pid:
        return
    run(["apache2ctl", "stop"], check=False, timeout=60)
    deadline = time.time() + timeout
    while time.time() < deadline and apache_pid():
        time.sleep(0.1)
    if apache_pid():            # only the one this test started
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


# What this test enables (a2enmod aiproxy brings proxy, proxy_http, ssl and
# socache_shmcb) and so may undo; other agents may change the rest of
# /etc/apache2 meanwhile (installing another module package).
OURS = {"aiproxy", "proxy", "proxy_http", "ssl", "socache_shmcb", "http2"}


def ours(path):
    base = os.path.basename(path)
    return (base.split(".")[0] in OURS or "aiproxy" in base
            or path.startswith("/var/log/apache2/"))


class Machine:
    """The state of /etc/apache2 and a2enmod's records before the test, and
    the way back to it."""

    DIRS = [ETC, "/var/lib/apache2", "/var/log/apache2"]

    def __init__(self):
        self.ports = open(PORTS, "rb").read()
        self.before = {d: tree(d) for d in self.DIRS}
        self.named = named_aiproxy()
        self.etc_aiproxy = os.path.lexists("/etc/aiproxy")
        # Debian's apache2 as installed, started by its package (under
        # systemd): stopped for the test, started again after it.
        self.was_running = apache_pid() is not None
        stop_apache()

    def restore(self):
        """Stops apache2, purges the package, removes what enabling added
        (and whatever a broken purge left)."""
        stop_apache()
        if known():
            run(APT + ["purge", PKG], env=APT_ENV, check=False, timeout=600)
        if not self.etc_aiproxy:
            shutil.rmtree("/etc/aiproxy", ignore_errors=True)
        for d in self.DIRS:
            for path in sorted((p for p in tree(d) - self.before[d] if ours(p)),
                               reverse=True):
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rmdir(path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass            # changed() reports it
        with open(PORTS, "wb") as f:
            f.write(self.ports)
        if self.was_running and not apache_pid():
            run(["apache2ctl", "start"], check=False, timeout=60)

    def changed(self):
        diff = {d: sorted(p for p in tree(d) ^ self.before[d] if ours(p)) for d in self.DIRS}
        return {d: x for d, x in diff.items() if x}


@pytest.fixture(scope="module")
def machine():
    # One run of this test at a time on a machine (another checkout's CI):
    # a lock on ports.conf, which it rewrites, so that no file is made.
    lock = open(PORTS, "rb")
    fcntl.flock(lock, fcntl.LOCK_EX)
    m = Machine()
    try:
        yield m
    finally:
        m.restore()
        lock.close()


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """dpkg-buildpackage on a copy of the tree's files (tracked, and new
    ones not ignored): the checkout gets no build products."""
    top = tmp_path_factory.mktemp("deb")
    src = top / "src"
    names = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=ROOT).stdout.split("\0")
    for name in names:
        if not name or name.startswith((".tools/", ".venv")) \
                or not os.path.isfile(os.path.join(ROOT, name)):
            continue
        os.makedirs(os.path.dirname(src / name), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), src / name)
    t0 = time.time()
    p = run(["dpkg-buildpackage", "-us", "-uc", "-b", "-j2"], cwd=src, check=False,
            timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    debs = [d for d in glob.glob(str(top / (PKG + "_*.deb")))]
    assert len(debs) == 1, debs
    return {"path": debs[0], "seconds": time.time() - t0,
            "changes": glob.glob(str(top / "*.changes"))[0]}


def sub(path, pairs):
    """Edits a configuration file as an administrator would."""
    text = open(path).read()
    for old, new in pairs:
        assert old in text, "%s: no %r" % (path, old)
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture(scope="module")
def site(deb, machine, store, upstream, tmp_path_factory):
    """The package installed, configured per the README, enabled, served."""
    run(APT + ["install", deb["path"]], env=APT_ENV, timeout=600)
    tls = tmp_path_factory.mktemp("tls")
    # A CA of the test's own and the server's certificate from it (a
    # self-signed CA:TRUE certificate as the server's makes mod_ssl warn).
    ca, cakey = str(tls / "ca.pem"), str(tls / "ca.key")
    cert, key, csr = str(tls / "cert.pem"), str(tls / "key.pem"), str(tls / "cert.csr")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=aiproxy test CA", "-keyout", cakey, "-out", ca])
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", key, "-out", csr])
    ext = tls / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature,"
                   "keyEncipherment\nextendedKeyUsage=serverAuth\n"
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", cert])
    port = free_port()
    db = "t_deb_" + secrets.token_hex(6)
    with open("/etc/aiproxy/openai-key", "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(PROVIDER_KEY + "\n")
    # The store's URI in a root-only file, as the README has it for a URI
    # with a password.
    with open("/etc/aiproxy/store.conf", "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write('AIProxyStore "%s"\n' % store.uri)
    sub(ETC + "/mods-available/aiproxy.conf", [
        ('AIProxyStore "mongodb://127.0.0.1:27017"', "Include /etc/aiproxy/store.conf"),
        ("AIProxyStoreDatabase aiproxy", "AIProxyStoreDatabase " + db),
        ("#AIProxyAdmins admin@example.edu", "AIProxyAdmins " + ADMIN),
        ("https://api.openai.com/v1", upstream.base + "/v1")])
    sub(ETC + "/sites-available/aiproxy.conf", [
        ("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:%d>" % port),
        ("ServerName aiproxy.example.edu", "ServerName localhost"),
        ("/etc/ssl/certs/ssl-cert-snakeoil.pem", cert),
        ("/etc/ssl/private/ssl-cert-snakeoil.key", key)])
    # Only the test's address: not Debian's *:80 and *:443.
    with open(PORTS, "w") as f:
        f.write("Listen 127.0.0.1:%d https\n" % port)
    run(["aiproxy-schema", store.uri, db])
    enmod = run(["a2enmod", "aiproxy", "http2"]).stdout
    run(["a2ensite", "aiproxy"])
    main_log = os.path.getsize(MAIN_LOG) if os.path.exists(MAIN_LOG) else 0
    run(["apache2ctl", "configtest"])
    run(["apache2ctl", "start"], timeout=60)
    assert wait_port(port), open(MAIN_LOG, errors="replace").read()[main_log:]
    secret = "file:/etc/aiproxy/token-secret"
    minted = []

    def token(email):
        out = run(["aiproxy-admin", "--store", store.uri, "--db", db, "--secret", secret,
                   "token", email]).stdout
        assert out.count("\n") == 1, out      # the README's TOKEN=$(...)
        minted.append(out.strip())
        return out.strip()

    yield {"base": "https://127.0.0.1:%d" % port, "cert": ca, "db": db, "token": token,
           "enmod": enmod, "main_log": main_log, "store": store, "minted": minted}
    stop_apache()


def client(site, versions, http2=True):
    """An httpx client trusting the test's certificate, noting each
    response's HTTP version."""
    ctx = ssl.create_default_context(cafile=site["cert"])
    return httpx.Client(http2=http2, verify=ctx, timeout=30, event_hooks={
        "response": [lambda r: versions.append(r.http_version)]})


def sdk(site, email, versions, http2=True):
    return openai.OpenAI(base_url=site["base"] + "/openai/v1", api_key=site["token"](email),
                         http_client=client(site, versions, http2), max_retries=0)


def test_lintian_finds_no_errors(deb):
    # The .changes: the package and its -dbgsym.
    p = run(["lintian", "--no-tag-display-limit", deb["changes"]], check=False, timeout=300)
    errors = [x for x in p.stdout.splitlines() if x.startswith("E:")]
    assert not errors, p.stdout
    # The test builds what is shipped only: no tests, no fuzzers.
    assert deb["seconds"] < 120, deb


def test_package_declares_what_it_needs_and_holds(deb):
    fields = run(["dpkg-deb", "-f", deb["path"], "Depends", "Recommends"]).stdout
    for dep in ("apache2-api-20120211", "apache2-bin", "libmongoc-1.0-0", "libjwt0",
                "libjansson4", "libcurl4", "python3-pymongo"):
        assert dep in fields, fields
    files = run(["dpkg-deb", "-c", deb["path"]]).stdout
    for f in ("./usr/lib/apache2/modules/mod_aiproxy.so",
              "./etc/apache2/mods-available/aiproxy.load",
              "./etc/apache2/mods-available/aiproxy.conf",
              "./etc/apache2/sites-available/aiproxy.conf", "./etc/aiproxy/prices.conf",
              "./usr/bin/aiproxy-admin", "./usr/bin/aiproxy-schema",
              "./usr/share/man/man1/aiproxy-admin.1.gz",
              "./usr/share/aiproxy/www/index.html", "./usr/share/aiproxy/schema/apply.py",
              "./usr/share/aiproxy/schema/collections.json"):
        assert re.search(r" %s$" % re.escape(f), files, re.M), f
    conffiles = run(["dpkg-deb", "-I", deb["path"], "conffiles"]).stdout.split()
    assert {"/etc/aiproxy/prices.conf", ETC + "/mods-available/aiproxy.conf",
            ETC + "/mods-available/aiproxy.load",
            ETC + "/sites-available/aiproxy.conf"} <= set(conffiles)


def test_installed_package_made_a_secret_and_enabled_nothing(site):
    st = os.stat("/etc/aiproxy/token-secret")
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0
    assert len(open("/etc/aiproxy/token-secret").read().strip()) >= 64
    # a2enmod aiproxy brought what the module needs (aiproxy.load's Depends).
    for dep in ("proxy", "proxy_http", "ssl"):
        assert os.path.exists("%s/mods-enabled/%s.load" % (ETC, dep)), site["enmod"]
    names = site["store"].client()[site["db"]].list_collection_names()
    assert {"users", "months", "requests"} <= set(names)   # aiproxy-schema, Debian's pymongo


def test_chat_over_http2(site, upstream):
    upstream.reset()
    versions = []
    raw = sdk(site, "deb-h2@example.com", versions).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG)
    assert raw.parse().choices[0].message.content == "This is a fake reply."
    assert versions == ["HTTP/2"]
    cost = chat_cost("gpt-4o-mini", 3, 5)
    assert raw.headers["cost"] == "0.00000345" and cost == 3450000
    # The key from /etc/aiproxy/openai-key, never the student's token.
    sent = upstream.requests()[-1]
    assert sent["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_stream_over_http2_is_charged(site):
    versions = []
    email = "deb-stream@example.com"
    chunks = list(sdk(site, email, versions).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == "This is a fake reply."
    assert versions == ["HTTP/2"]
    db = site["store"].client()[site["db"]]
    deadline = time.time() + 10
    while time.time() < deadline and not db.requests.find_one({"email": email}):
        time.sleep(0.1)
    doc = db.requests.find_one({"email": email})
    assert doc and doc["cost"] == chat_cost("gpt-4o-mini", 3, 5), doc


def test_http11_and_refusals_too(site):
    versions = []
    raw = sdk(site, "deb-h1@example.com", versions, http2=False) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert versions == ["HTTP/1.1"] and raw.headers["cost"] == "0.00000345"
    # Not a token of this gateway's secret: OpenAI's error shape.
    with client(site, versions) as c:
        r = c.post(site["base"] + "/openai/v1/chat/completions", headers={
            "Authorization": "Bearer x.y.z"}, json={"model": "gpt-4o-mini", "messages": MSG})
    assert r.status_code == 401 and set(r.json()["error"]) >= {"message", "type", "code"}


def test_dashboard_health_and_admin_api(site):
    versions = []
    with client(site, versions) as c:
        r = c.get(site["base"] + "/admin/")
        assert r.status_code == 200
        assert r.content == open(os.path.join(ROOT, "admin/www/index.html"), "rb").read()
        assert c.get(site["base"] + "/health").status_code == 200
        admin = {"Authorization": "Bearer " + site["token"](ADMIN)}
        r = c.get(site["base"] + "/usage", params={"email": "deb-h2@example.com"},
                  headers=admin)
        assert r.status_code == 200, r.text
        assert [u["email"] for u in r.json()["data"]] == ["deb-h2@example.com"]
        assert c.get(site["base"] + "/targets", headers=admin).status_code == 200
        r = c.get(site["base"] + "/usage", headers={
            "Authorization": "Bearer " + site["token"]("student@example.com")})
        assert r.status_code == 403
    assert set(versions) == {"HTTP/2"}


def test_logs_hold_no_warning(site):
    time.sleep(0.3)
    text = open(SITE_LOG, errors="replace").read() if os.path.exists(SITE_LOG) else ""
    with open(MAIN_LOG, errors="replace") as f:
        f.seek(site["main_log"])
        text += f.read()
    # Debian's apache2.conf sets no global ServerName.
    assert not log_problems(text, [re.compile(r"AH00558")]), text
    # The site's access log: who, what it cost; never a key or a token.
    access = open("/var/log/apache2/aiproxy-access.log").read()
    assert re.search(r"email=deb-h2@example.com id=\S+ cost=0.00000345 provider=openai",
                     access), access
    secret = open("/etc/aiproxy/token-secret").read().strip()
    assert len(site["minted"]) >= 4
    for s in [PROVIDER_KEY, secret] + site["minted"]:
        assert s not in access + text


def test_purge_leaves_nothing(site, machine):
    owned = run(["dpkg-query", "-L", PKG]).stdout.split("\n")
    owned = [f for f in owned if f and not os.path.isdir(f)]
    assert MODULE in owned
    stop_apache()
    # Removed: the module and site are disabled, the configuration stays.
    run(APT + ["remove", PKG], env=APT_ENV, timeout=600)
    for link in ("mods-enabled/aiproxy.load", "mods-enabled/aiproxy.conf",
                 "sites-enabled/aiproxy.conf"):
        assert not os.path.lexists("%s/%s" % (ETC, link)), link
    assert os.path.exists("/etc/aiproxy/token-secret")
    assert os.path.exists(ETC + "/mods-available/aiproxy.conf")
    assert not os.path.exists(MODULE)
    assert status()[-1:] == ["config-files"]
    run(APT + ["purge", PKG], env=APT_ENV, timeout=600)
    assert not known()
    left = [f for f in owned if os.path.lexists(f)]
    assert not left, left
    for d in ("/etc/aiproxy", "/usr/share/aiproxy", "/usr/share/doc/" + PKG):
        assert not os.path.lexists(d), d
    # Nothing new named aiproxy: no secret, key, log, enabled link or
    # a2enmod record (the module and site were enabled by hand).
    new = sorted(named_aiproxy() - machine.named)
    assert not new, new
    # No process holds the module. (Removing it, apache2's maintainer
    # helper restarts apache2 through invoke-rc.d where policy-rc.d lets it:
    # then apache2 runs without it, and restore() stops it.)
    assert not mapping_module()
    # What a2enmod aiproxy enabled besides it (proxy, ssl, ...) is the
    # test's doing, not the package's: undone, the machine is as it was.
    machine.restore()
    assert not machine.changed(), machine.changed()
    assert open(PORTS, "rb").read() == machine.ports
