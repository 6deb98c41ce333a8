"""tools/run says in one line what stops it, before it prints the gateway's
URL or a token: a store it cannot reach, an address already in use."""
import os
import socket
import subprocess

from conftest import ROOT


def run(env):
    e = dict(os.environ, OPENAI_API_KEY="sk-test-run", AIPROXY_TOKEN_SECRET="r" * 40)
    e.update(env)
    p = subprocess.run([os.path.join(ROOT, "tools", "run")], env=e, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def assert_one_clear_line(rc, out, err, *words):
    assert rc != 0
    # Nothing that looks like it started: no URL, no token.
    assert "http://" not in out and "token" not in out and "eyJ" not in out, out
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("run: "), err
    for w in words:
        assert w in last, (w, err)


def test_store_unreachable(tmp_path):
    rc, out, err = run({"MONGODB_URI": "mongodb://u:pw-secret@127.0.0.1:1/"
                                       "?serverSelectionTimeoutMS=500",
                        "AIPROXY_LISTEN": "127.0.0.1:1"})
    assert_one_clear_line(rc, out, err, "store", "MONGODB_URI")
    assert "pw-secret" not in err + out


def test_port_in_use(store):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    try:
        rc, out, err = run({"MONGODB_URI": store.uri, "AIPROXY_LISTEN": addr,
                            "AIPROXY_DB": "t_run"})
    finally:
        s.close()
    assert_one_clear_line(rc, out, err, addr, "AIPROXY_LISTEN", "in use")


def test_dashboard_link_signs_an_admin_in(store, upstream):
    """A newcomer without an identity provider: tools/run prints a link
    that opens the dashboard signed in as the first admin; its token rides
    in the fragment, which no request and so no log carries."""
    import time
    from conftest import ADMIN, free_port
    sync_api = __import__("pytest").importorskip("playwright.sync_api")
    addr = "127.0.0.1:%d" % free_port()
    e = dict(os.environ, OPENAI_API_KEY="sk-test-run", AIPROXY_TOKEN_SECRET="r" * 40,
             MONGODB_URI=store.uri, AIPROXY_LISTEN=addr, AIPROXY_DB="t_run_link",
             OPENAI_BASE_URL=upstream.base + "/v1", AIPROXY_LOGLEVEL="info")
    p = subprocess.Popen([os.path.join(ROOT, "tools", "run")], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        link = None
        for line in p.stdout:
            if "/admin/#token=" in line:
                link = line.strip()
                break
        assert link and link.startswith("http://%s/admin/#token=" % addr), link
        token = link.split("#token=")[1]
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(tuple(addr.split(":")[:1] + [int(addr.split(":")[1])]),
                                         timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        pw = sync_api.sync_playwright().start()
        try:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                   args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = b.new_page()
            page.goto(link)
            sync_api.expect(page.locator("#who")).to_have_text(ADMIN)
            sync_api.expect(page.locator("#nav-admin")).to_be_visible()
            assert "#token" not in page.url
            b.close()
        finally:
            pw.stop()
        with open(os.path.join(ROOT, "var", "access.log")) as f:
            assert token not in f.read()
    finally:
        p.terminate()
        p.wait(timeout=15)
