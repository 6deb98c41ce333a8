"""Reservations are never leaked: a hold whose request died with its child
expires (AIProxyHoldTTL) and the next reservation near the cap sweeps it."""
import os
import signal
import subprocess
import threading
import time

import httpx
from bson import Int64

from conftest import PRICES, Gateway, make_token

BODY = {"model": "gpt-4o-mini", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hold me"}]}


def reservation(body_len):
    p = PRICES["gpt-4o-mini"]
    return body_len * max(p["input"], p["cache_write"]) + 100 * p["output"]


def post(gw, email, headers=None, timeout=10):
    h = {"Authorization": "Bearer " + make_token(email)}
    h.update(headers or {})
    return httpx.post(gw.url("/openai/v1/chat/completions"), json=BODY, headers=h,
                      timeout=timeout)


def body_len():
    import json
    # httpx serialises json= compactly; the gateway reserves per body byte.
    return len(json.dumps(BODY, separators=(",", ":"), ensure_ascii=False).encode())


def test_expired_hold_is_swept_by_the_next_reservation(gateway, up):
    email = "stale@example.com"
    month = time.strftime("%Y-%m", time.gmtime())
    r = reservation(body_len())
    gateway.set_cap(email, 2 * r)
    # A hold left by a child that died an hour ago fills the month.
    gateway.db().months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(0), "reserved": Int64(2 * r), "load": Int64(2 * r),
        "requests": Int64(0),
        "holds": {"deadchild01": {"a": Int64(2 * r),
                                  "x": Int64(int(time.time() * 1000) - 3600_000)}}})
    resp = post(gateway, email)
    assert resp.status_code == 200, resp.text
    m = gateway.db().months.find_one({"email": email})
    assert "deadchild01" not in m["holds"]
    assert m["reserved"] == 0 and m["load"] == m["spent"] > 0


def test_live_hold_still_counts(gateway, up):
    email = "live@example.com"
    month = time.strftime("%Y-%m", time.gmtime())
    r = reservation(body_len())
    gateway.set_cap(email, 2 * r)
    gateway.db().months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(0), "reserved": Int64(2 * r), "load": Int64(2 * r),
        "requests": Int64(0),
        "holds": {"inflight01": {"a": Int64(2 * r),
                                 "x": Int64(int(time.time() * 1000) + 600_000)}}})
    resp = post(gateway, email)
    assert resp.status_code == 429
    assert up.requests() == []


def kill_httpd(gw):
    """SIGKILL the parent and every child: nothing gets to clean up."""
    pid = gw.proc.pid
    subprocess.run(["pkill", "-9", "-P", str(pid)], check=False)
    os.kill(pid, signal.SIGKILL)
    gw.proc.wait()


def test_hold_of_a_killed_child_expires(store, upstream):
    upstream.reset()
    email = "killed@example.com"
    ttl = 10
    g1 = Gateway(store, upstream, extra_conf="AIProxyHoldTTL %d\n" % ttl).start()
    g2 = None
    try:
        r = reservation(body_len())
        g1.set_cap(email, r + r // 2)           # room for one request at a time
        def hang():
            try:
                post(g1, email, {"X-Fake-Hang": "1"}, 30)
            except httpx.HTTPError:
                pass    # its server is killed below

        hung = threading.Thread(target=hang, daemon=True)
        hung.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            m = g1.db().months.find_one({"email": email})
            if m and m.get("holds"):
                break
            time.sleep(0.05)
        assert m and len(m["holds"]) == 1
        kill_httpd(g1)
        g2 = Gateway(store, upstream, db=g1.db_name).start()
        # The dead request's hold still fills the budget...
        assert post(g2, email).status_code == 429
        # ...until it expires; then the next reservation sweeps it.
        time.sleep(ttl + 0.5)
        resp = post(g2, email)
        assert resp.status_code == 200, resp.text
        m = g2.db().months.find_one({"email": email})
        assert m["reserved"] == 0 and m["holds"] == {} and m["requests"] == 1
    finally:
        if g2:
            g2.stop()
        g1.stop()
