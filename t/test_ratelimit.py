"""AIProxyRateLimit N SECONDS: a sliding window of requests per user, kept
in the store, so every child of one httpd and every httpd sharing the store
count the same requests. A refused request gets 429 with Retry-After, never
reaches a provider and is never charged."""
import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from conftest import Gateway, Upstream, make_token
from helpers import new_email

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "limit me"}]}

# One process of the concurrency tests: N threads, each on its own
# connection, released together; prints [[status, error code], ...].
BURST = r"""
import json, sys, threading, httpx
urls, token, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = json.loads(sys.argv[4])
go = threading.Barrier(n)
out = [None] * n
def one(i):
    with httpx.Client(timeout=60) as c:
        go.wait()
        r = c.post(urls[i % len(urls)], json=body,
                   headers={"Authorization": "Bearer " + token})
        code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
        out[i] = [r.status_code, code]
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(out))
"""


def post(gw, email, path=CHAT):
    return httpx.post(gw.url(path), json=BODY, timeout=30,
                      headers={"Authorization": "Bearer " + make_token(email)})


def burst(urls, email, processes, per_process):
    """processes x per_process requests at once; [[status, code], ...]."""
    token = make_token(email)
    procs = [subprocess.Popen([sys.executable, "-c", BURST, json.dumps(urls), token,
                               str(per_process), json.dumps(BODY)],
                              stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        out += json.loads(stdout)
    return out


def settled(gw, email, n, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if gw.db().requests.count_documents({"email": email}) >= n:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    return gw.db().requests.count_documents({"email": email})


@pytest.fixture(scope="module")
def rup():
    with Upstream("ratelimit") as u:
        yield u


@pytest.fixture
def r_up(rup):
    rup.reset()
    return rup


def chats(up):
    return [r for r in up.requests() if r["path"].endswith("/chat/completions")]


# ------------------------------------------------------------ one user

def test_limit_headers_429_and_recovery(store, r_up):
    g = Gateway(store, r_up, extra_conf="AIProxyRateLimit 5 3\n").start()
    try:
        email = new_email("rl")
        got = []
        for _ in range(5):
            r = post(g, email)
            assert r.status_code == 200, r.text
            got.append(r)
        t_first = time.monotonic()
        assert [r.headers["RateLimit-Limit"] for r in got] == ["5"] * 5
        assert [r.headers["RateLimit-Remaining"] for r in got] == ["4", "3", "2", "1", "0"]
        assert all(1 <= int(r.headers["RateLimit-Reset"]) <= 3 for r in got)

        refused = post(g, email)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/json")
        err = refused.json()["error"]
        assert err["code"] == "rate_limit_exceeded"
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 3
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Limit"] == "5"
        # The SDK sees a RateLimitError (it would retry by itself otherwise).
        client = openai.OpenAI(base_url=g.url("/v1"), api_key=make_token(email),
                               max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(**BODY)

        assert len(chats(r_up)) == 5
        assert settled(g, email, 5) == 5
        m = g.db().months.find_one({"email": email})
        assert m["requests"] == 5 and m["reserved"] == 0 and m["holds"] == {}
        spent = m["spent"]

        # Someone else is not limited by this user's requests.
        assert post(g, new_email("rl-other")).status_code == 200

        # Once the oldest request leaves the window, one more fits.
        time.sleep(max(0, 3.2 - (time.monotonic() - t_first)))
        again = post(g, email)
        assert again.status_code == 200, again.text
        assert len(chats(r_up)) == 7
        m = g.db().months.find_one({"email": email})
        assert m["requests"] == 6 and m["spent"] > spent
    finally:
        g.stop()


def test_refused_requests_do_not_extend_the_window(store, r_up):
    """Only admitted requests count: hammering while limited does not push
    the time the user may come back."""
    g = Gateway(store, r_up, extra_conf="AIProxyRateLimit 2 2\n").start()
    try:
        email = new_email("rl-hammer")
        assert [post(g, email).status_code for _ in range(2)] == [200, 200]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            assert post(g, email).status_code == 429
            time.sleep(0.1)
        time.sleep(max(0, 2.2 - (time.monotonic() - t0)))
        assert post(g, email).status_code == 200
    finally:
        g.stop()


# ------------------------------------------------------------ concurrency

@pytest.fixture(scope="module")
def limited(store, rup):
    g = Gateway(store, rup, extra_conf="AIProxyRateLimit 10 30\n").start()
    yield g
    g.stop()


def test_concurrent_processes_admit_exactly_the_limit(limited, r_up):
    email = new_email("rl-burst")
    # A first request creates the user's documents (see the next test for
    # a brand-new user).
    assert post(limited, email).status_code == 200
    r_up.reset()
    results = burst([limited.url(CHAT)], email, 4, 10)
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 9, results
    assert [c for s, c in results if s != 200] == ["rate_limit_exceeded"] * 31, results
    assert len(chats(r_up)) == 9
    assert settled(limited, email, 10) == 10
    m = limited.db().months.find_one({"email": email})
    assert m["requests"] == 10 and m["reserved"] == 0 and m["holds"] == {}


def test_concurrent_first_requests_of_a_new_user(limited, r_up):
    email = new_email("rl-new")
    results = burst([limited.url(CHAT)], email, 4, 10)
    admitted = [s for s, _ in results].count(200)
    assert admitted == 10, results
    assert [c for s, c in results if s != 200] == ["rate_limit_exceeded"] * 30, results
    assert len(chats(r_up)) == 10


# ------------------------------------------------------------ two hosts

@pytest.fixture(scope="module")
def pair(store, rup):
    conf = "AIProxyRateLimit 6 30\n"
    g1 = Gateway(store, rup, extra_conf=conf).start()
    g2 = Gateway(store, rup, extra_conf=conf, db=g1.db_name)
    try:
        g2.start()
        yield g1, g2
    finally:
        g2.stop()
        g1.stop()


def test_two_gateways_sharing_a_store_alternated(pair, r_up):
    g1, g2 = pair
    email = new_email("rl-pair")
    got = [post((g1, g2)[i % 2], email) for i in range(9)]
    assert [r.status_code for r in got] == [200] * 6 + [429] * 3
    # Each host counts the other's requests.
    assert [r.headers["RateLimit-Remaining"] for r in got[:6]] == \
        ["5", "4", "3", "2", "1", "0"]
    assert len(chats(r_up)) == 6
    assert settled(g1, email, 6) == 6


def test_two_gateways_sharing_a_store_concurrent(pair, r_up):
    g1, g2 = pair
    email = new_email("rl-pair-burst")
    assert post(g2, email).status_code == 200
    r_up.reset()
    results = burst([g1.url(CHAT), g2.url(CHAT)], email, 4, 8)
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 5, results
    assert [c for s, c in results if s != 200] == ["rate_limit_exceeded"] * 27, results
    assert len(chats(r_up)) == 5


def test_limited_user_is_refused_before_the_body_is_read(store, r_up):
    """A refused client costs a store round trip, not a parse of its body:
    over the limit, even a body that is not JSON gets the 429."""
    g = Gateway(store, r_up, extra_conf="AIProxyRateLimit 1 30\n").start()
    try:
        email = new_email("rl-early")
        assert post(g, email).status_code == 200
        r = httpx.post(g.url("/openai/v1/chat/completions"), content=b"[0," * 100000,
                       headers={"Authorization": "Bearer " + make_token(email),
                                "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        g.stop()
