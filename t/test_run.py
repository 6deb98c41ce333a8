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
