"""Reservations are never leaked: a hold whose request died with its child
expires (AIProxyHoldTTL) and the next reservation near the cap sweeps it.
The upstream did the work all the same, so a swept hold is charged its
amount (an estimated request record), and a request that outlived its hold
is charged exactly once."""
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


def test_expired_hold_is_swept_and_charged(gateway, up):
    email = "stale@example.com"
    month = time.strftime("%Y-%m", time.gmtime())
    r = reservation(body_len())
    gateway.set_cap(email, 3 * r)
    past = Int64(int(time.time() * 1000) - 3600_000)
    # Holds left by children that died an hour ago fill the month; the
    # second is from before holds carried their endpoint and model.
    gateway.db().months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(r), "reserved": Int64(2 * r), "load": Int64(3 * r),
        "requests": Int64(1),
        "holds": {"deadchild01": {"a": Int64(r), "x": past,
                                  "e": "chat/completions", "m": "gpt-4o-mini"},
                  "oldhold02": {"a": Int64(r), "x": past}}})
    resp = post(gateway, email)
    # The work was done upstream: the swept holds stay spent, so the month
    # is still full.
    assert resp.status_code == 429, resp.text
    assert up.requests() == []
    m = gateway.db().months.find_one({"email": email})
    assert m["holds"] == {}
    assert m["spent"] == 3 * r and m["reserved"] == 0 and m["load"] == 3 * r
    assert m["requests"] == 3
    assert set(m["done"]) >= {"deadchild01", "oldhold02"}
    recs = {d["_id"]: d for d in gateway.db().requests.find({"email": email})}
    assert set(recs) == {"deadchild01", "oldhold02"}
    for rid, endpoint, model in (("deadchild01", "chat/completions", "gpt-4o-mini"),
                                 ("oldhold02", "", "")):
        d = recs[rid]
        assert d["estimated"] is True
        assert d["cost"] == r and d["reserved"] == r
        assert d["status"] == 0 and d["provider"] == ""
        assert (d["endpoint"], d["model"]) == (endpoint, model)
        assert d["month"] == month
    # With room again, the next request goes through and is charged once.
    gateway.set_cap(email, 5 * r)
    resp = post(gateway, email)
    assert resp.status_code == 200, resp.text
    m = gateway.db().months.find_one({"email": email})
    assert m["requests"] == 4 and m["reserved"] == 0 and m["holds"] == {}


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
        # ...until it expires; then the next reservation sweeps it and
        # charges it: the upstream may well have done the work.
        time.sleep(ttl + 0.5)
        resp = post(g2, email)
        assert resp.status_code == 429, resp.text
        m = g2.db().months.find_one({"email": email})
        assert m["reserved"] == 0 and m["holds"] == {} and m["requests"] == 1
        assert m["spent"] == m["load"] == r
        recs = list(g2.db().requests.find({"email": email}))
        assert len(recs) == 1
        assert recs[0]["estimated"] is True and recs[0]["cost"] == r
        assert (recs[0]["endpoint"], recs[0]["model"]) == ("chat/completions",
                                                           "gpt-4o-mini")
    finally:
        if g2:
            g2.stop()
        g1.stop()


def test_request_outliving_its_hold_is_charged_once(make_gateway, up):
    """A request slower than AIProxyHoldTTL has its hold swept (and
    charged) by another request near the cap; its own late settlement then
    charges nothing more."""
    email = "slow@example.com"
    ttl = 10                                    # the directive's minimum
    gw = make_gateway("AIProxyHoldTTL %d\n" % ttl).start()
    r = reservation(body_len())
    gw.set_cap(email, r + r // 2)               # room for one request at a time
    slow = {}

    def run():
        slow["resp"] = post(gw, email, {"X-Fake-Delay-Ms": str((ttl + 3) * 1000)},
                            timeout=60)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.time() + 10
    m = None
    while time.time() < deadline:
        m = gw.db().months.find_one({"email": email})
        if m and m.get("holds"):
            break
        time.sleep(0.05)
    assert m and len(m["holds"]) == 1
    (rid,) = m["holds"]
    time.sleep(max(0, m["holds"][rid]["x"] / 1000 + 0.5 - time.time()))
    # The hold has expired while its request still runs: this reservation
    # sweeps it, charged, so the month stays full.
    assert post(gw, email).status_code == 429
    m = gw.db().months.find_one({"email": email})
    assert rid not in m["holds"] and rid in m["done"]
    assert m["spent"] == r and m["requests"] == 1
    t.join(30)
    resp = slow["resp"]
    assert resp.status_code == 200, resp.text
    m = gw.db().months.find_one({"email": email})
    assert m["spent"] == m["load"] == r
    assert m["reserved"] == 0 and m["holds"] == {} and m["requests"] == 1
    recs = list(gw.db().requests.find({"email": email}))
    assert len(recs) == 1 and recs[0]["_id"] == rid
    assert recs[0]["estimated"] is True and recs[0]["cost"] == r
    assert resp.headers["monthlyRequests"] == "1"
    assert len([q for q in up.requests() if q["path"].endswith("/chat/completions")]) == 1
