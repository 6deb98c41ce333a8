"""/health (for load balancers), /targets (providers, never their keys) and
/api/stats (admins only): counters kept in shared memory, so they add up
the requests every child served."""
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import (ADMIN, ANTHROPIC_KEY, PROVIDER_KEY, TOKEN_SECRET, Gateway, Store,
                      Upstream, free_port, make_token)
from helpers import auth, new_email, stats

MULTI_KEYS = {"MULTI_K1": "sk-multi1-" + secrets.token_hex(12),
              "MULTI_K2": "sk-multi2-" + secrets.token_hex(12),
              "DEAD_KEY": "sk-dead-" + secrets.token_hex(12)}
CHAT = "/openai/v1/chat/completions"
MSG = [{"role": "user", "content": "count me"}]


# ------------------------------------------------------------ /health

def test_health_ok(gateway):
    before = time.time() * 1000
    r = httpx.get(gateway.url("/health"), timeout=10)
    after = time.time() * 1000
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok" and body["region"] == "test-region"
    assert isinstance(body["ts"], int)
    assert before - 3000 <= body["ts"] <= after + 3000
    assert set(body) == {"status", "ts", "region"}


@pytest.mark.parametrize("path", ["/health", "/targets", "/api/stats"])
def test_only_get(gateway, path):
    for method in ("POST", "DELETE"):
        r = httpx.request(method, gateway.url(path), content=b"{}", timeout=10,
                          headers=auth(ADMIN))
        assert r.status_code == 405, (method, r.text)
        assert r.json()["error"]["code"] == "method_not_allowed", (method, r.text)


@pytest.mark.expect_log(r"AIP01001", r"AIP01101", r"AIP01106")
def test_health_names_the_store_when_it_is_down(upstream):
    s = Store()
    if not s.local:
        pytest.skip("needs the local store to stop it (MONGODB_URI is set)")
    s.start()
    g = None
    try:
        g = Gateway(s, upstream).start()
        assert httpx.get(g.url("/health"), timeout=10).status_code == 200
        s.stop()
        # Within the probe's period (2 s) and the store timeout.
        t0 = time.monotonic()
        while True:
            r = httpx.get(g.url("/health"), timeout=10)
            if r.status_code != 200 or time.monotonic() - t0 > 5:
                break
            time.sleep(0.1)
        assert time.monotonic() - t0 < 5
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["status"] != "ok" and body["region"] == "test-region"
        assert "store" in body.get("failing", []), body
        assert abs(body["ts"] - time.time() * 1000) < 5000
        # And back by itself once the store is.
        s.restart()
        deadline = time.time() + 15
        while time.time() < deadline:
            r = httpx.get(g.url("/health"), timeout=10)
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] == "ok"
    finally:
        if g:
            g.stop()
        s.stop()


# ------------------------------------------------------------ a fresh gateway

@pytest.fixture(scope="module")
def sup():
    with Upstream("stats") as u:
        yield u


@pytest.fixture(scope="module")
def sgw(store, sup):
    multi = sup.base + "/multi/v1"
    dead = "http://127.0.0.1:%d/v1" % free_port()        # refuses connections
    conf = """
AIProxyProvider multi "%(multi)s" api=openai key=env:MULTI_K1 key=env:MULTI_K2
<Proxy "%(multi)s">
    ProxySet keepalive=On timeout=300 connectiontimeout=5
</Proxy>
AIProxyProvider dead "%(dead)s" api=openai key=env:DEAD_KEY
<Proxy "%(dead)s">
    ProxySet keepalive=On timeout=300 connectiontimeout=5
</Proxy>
AIProxyPrice stats-model input=1.00 output=2.00 max_output=1000
AIProxyModel stats-model dead openai
# Every stats-model request tries `dead` first: exactly one retry each.
AIProxyRest 0
AIProxyRateLimit 3 60
""" % {"multi": multi, "dead": dead}
    with Gateway(store, sup, extra_conf=conf, env=MULTI_KEYS) as g:
        yield g


def test_targets_need_an_admin(sgw):
    """Upstream URLs say where the site's traffic goes: not for anyone."""
    r = httpx.get(sgw.url("/targets"), timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(sgw.url("/targets"), headers=auth("student@example.com"), timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"
    assert sgw.upstream.base not in r.text


def test_targets_list_providers_without_keys(sgw):
    r = httpx.get(sgw.url("/targets"), headers=auth(ADMIN), timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    targets = {t["name"]: t for t in r.json()["targets"]}
    assert set(targets) == {"openai", "anthropic", "multi", "dead"}
    assert targets["multi"]["keys"] == 2 and targets["openai"]["keys"] == 1
    assert targets["multi"]["api"] == "openai" and targets["anthropic"]["api"] == "anthropic"
    assert targets["openai"]["url"] == sgw.upstream.base + "/v1"
    for key in list(MULTI_KEYS.values()) + [PROVIDER_KEY, ANTHROPIC_KEY, TOKEN_SECRET]:
        assert key not in r.text
    assert "Bearer" not in r.text and "sk-" not in r.text


def test_stats_needs_an_admin(sgw):
    r = httpx.get(sgw.url("/api/stats"), timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(sgw.url("/api/stats"), headers={"Authorization": "Bearer nonsense"},
                  timeout=10)
    assert r.status_code == 401
    r = httpx.get(sgw.url("/api/stats"), headers=auth("student@example.com"), timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"
    r = httpx.get(sgw.url("/api/stats"),
                  headers={"Authorization": "Bearer " + make_token(ADMIN, secret="x" * 40)},
                  timeout=10)
    assert r.status_code == 401
    for key in list(MULTI_KEYS.values()) + [PROVIDER_KEY, ANTHROPIC_KEY]:
        assert key not in stats(sgw).__repr__()


def served_by(gw, since):
    """pids of the children that forwarded requests (debug log lines)."""
    log = gw.error_log()[since:]
    return set(re.findall(r"\[pid (\d+):tid \d+\] mod_proxy\.c\(\d+\): \[client [^\]]*\] "
                          r"AH01143", log))


@pytest.mark.expect_log(r"AIP01310", r"AIP01601", r"AH00957", r"AH01114")
def test_stats_count_what_this_test_did(sgw, sup):
    """Run last in this module: it counts every request the module made
    through sgw (the checks above reach no counted endpoint)."""
    base = stats(sgw)
    assert base["requests"] == 0, base
    total = 0

    # Plain requests from many connections at once, so several children
    # serve them (each user stays within the rate limit of 3).
    def user_requests(_):
        email = new_email("st")
        with httpx.Client(timeout=30) as c:
            return [c.post(sgw.url(CHAT), headers=auth(email),
                           json={"model": "gpt-4o-mini", "messages": MSG}).status_code
                    for _ in range(3)]

    mark = len(sgw.error_log())
    children = set()
    for _ in range(3):
        with ThreadPoolExecutor(8) as ex:
            got = [s for batch in ex.map(user_requests, range(8)) for s in batch]
        assert got == [200] * 24
        total += 24
        children = served_by(sgw, mark)
        if len(children) >= 2:
            break
    assert len(children) >= 2, "every request was served by one child: %s" % children

    # The cache: one miss and one hit each for embeddings and model lists.
    email = new_email("st-cache")
    body = {"model": "text-embedding-3-small", "input": "stats " + secrets.token_hex(4)}
    hits = [httpx.post(sgw.url("/openai/v1/embeddings"), headers=auth(email), json=body,
                       timeout=30).headers["x-cache"] for _ in range(2)]
    hits += [httpx.get(sgw.url("/openai/v1/models"), headers=auth(email),
                       timeout=30).headers["x-cache"] for _ in range(2)]
    assert hits == ["MISS", "HIT", "MISS", "HIT"]
    total += 4

    # Failover: `dead` refuses, openai answers; one retry each.
    email = new_email("st-retry")
    for _ in range(2):
        r = httpx.post(sgw.url("/v1/chat/completions"), headers=auth(email),
                       json={"model": "stats-model", "messages": MSG}, timeout=30)
        assert r.status_code == 200, r.text
    total += 2

    # The rate limit: 3 of 5 pass.
    email = new_email("st-limit")
    got = [httpx.post(sgw.url(CHAT), headers=auth(email),
                      json={"model": "gpt-4o-mini", "messages": MSG},
                      timeout=30).status_code for _ in range(5)]
    assert got == [200, 200, 200, 429, 429]
    total += 5

    s = stats(sgw)
    assert s["requests"] == total
    assert s["cache_hits"] == 2 and s["cache_misses"] == 2
    assert s["cache_hit_rate"] == pytest.approx(0.5)
    assert s["retries"] == 2
    assert s["upstream_errors"] == 2
    assert s["rate_limited"] == 2
    assert s["over_cap"] == 0
    assert s["store_connected"] is True
    assert 0 <= s["uptime_s"] < 600
    assert s["cache"] == "shmcb" and s["cache_ttl"] == 300
    assert s["rate_limit"] == {"requests": 3, "window_s": 60}
    assert {t["name"] for t in s["targets"]} == {"openai", "anthropic", "multi", "dead"}
    text = httpx.get(sgw.url("/api/stats"), headers=auth(ADMIN), timeout=10).text
    for key in list(MULTI_KEYS.values()) + [PROVIDER_KEY, ANTHROPIC_KEY, TOKEN_SECRET]:
        assert key not in text
    # Reading the statistics counts nothing.
    assert stats(sgw)["requests"] == total
