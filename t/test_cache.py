"""The response cache: model lists and, where AIProxyCacheEmbeddings is On
(/openai/v1 in t/conf/aiproxy.conf), byte-identical embeddings requests. A
hit costs $0 but counts as a request; chat, streams and errors are never
cached; entries expire after AIProxyCacheTTL; redis:HOST:PORT shares the
cache between gateways.

Each gateway here has an upstream of its own, so the upstream's records
count exactly the requests the cache let through."""
import json
import os
import secrets
import shutil
import subprocess
import time

import httpx
import openai
import pytest

from conftest import ADMIN, PRICES, Gateway, Upstream, free_port, make_token, usd, wait_port
from helpers import auth, new_email, wait_docs

EMBED = "/openai/v1/embeddings"
MODELS = "/openai/v1/models"
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
SOCACHE_REDIS = "/usr/lib/apache2/modules/mod_socache_redis.so"


def embed_body(text=None, **extra):
    body = {"model": "text-embedding-3-small",
            "input": text or "cache me %s please" % secrets.token_hex(4)}
    body.update(extra)
    return json.dumps(body).encode()


def post_embed(gw, email, body, path=EMBED, headers=None):
    h = dict(auth(email), **{"Content-Type": "application/json"})
    h.update(headers or {})
    return httpx.post(gw.url(path), content=body, headers=h, timeout=30)


def calls(up, suffix):
    return [r for r in up.requests() if r["path"].endswith(suffix)]


@pytest.fixture(scope="module")
def cup():
    with Upstream("cache") as u:
        yield u


@pytest.fixture(scope="module")
def cgw(store, cup):
    # A route that allows more than /openai/v1, for the per-route entries.
    with Gateway(store, cup, extra_conf="<Location /wide>\n    AIProxyRoute path openai\n"
                 "    AIProxyModels *\n</Location>\n") as g:
        yield g


@pytest.fixture
def c_up(cup):
    cup.reset()
    return cup


# ------------------------------------------------------------ model lists

def test_models_miss_then_hit_sdk(cgw, c_up):
    client = openai.OpenAI(base_url=cgw.openai_base, api_key=make_token(new_email("ml")),
                           max_retries=0)
    first = client.models.with_raw_response.list()
    second = client.models.with_raw_response.list()
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["content-type"].startswith("application/json")
    ids = [m.id for m in first.parse().data]
    assert ids == [m.id for m in second.parse().data]
    assert set(ids) == {"gpt-4o-mini", "text-embedding-3-small"}
    assert len(calls(c_up, "/models")) == 1
    # Another user gets the same list from the cache.
    other = httpx.get(cgw.url(MODELS), headers=auth(new_email("ml2")), timeout=30)
    assert other.status_code == 200 and other.headers["x-cache"] == "HIT"
    assert other.json() == json.loads(first.http_response.text)
    assert len(calls(c_up, "/models")) == 1


def test_models_cached_per_route(cgw, c_up):
    email = new_email("mlroute")
    r1 = httpx.get(cgw.url("/wide/openai/v1/models"), headers=auth(email), timeout=30)
    r2 = httpx.get(cgw.url("/wide/openai/v1/models"), headers=auth(email), timeout=30)
    assert (r1.headers["x-cache"], r2.headers["x-cache"]) == ("MISS", "HIT")
    # /wide allows every priced model, /openai/v1 two: separate entries.
    assert len(r1.json()["data"]) > 2
    assert r2.json() == r1.json()
    assert len(calls(c_up, "/models")) == 1


@pytest.mark.expect_log(r"AIP01310")
def test_models_error_is_not_cached(cgw, c_up):
    email = new_email("mlerr")
    path = MODELS + "?probe=" + secrets.token_hex(4)      # a key of its own
    c_up.next(status=500, path="/models")
    r1 = httpx.get(cgw.url(path), headers=auth(email), timeout=30)
    assert r1.status_code == 500 and r1.headers["x-cache"] == "MISS"
    r2 = httpx.get(cgw.url(path), headers=auth(email), timeout=30)
    assert r2.status_code == 200 and r2.headers["x-cache"] == "MISS"
    r3 = httpx.get(cgw.url(path), headers=auth(email), timeout=30)
    assert r3.status_code == 200 and r3.headers["x-cache"] == "HIT"
    assert len(calls(c_up, "/models")) == 2


def test_a_head_does_not_cache_an_empty_list(cgw, c_up):
    """HEAD is a GET to httpd: its bodiless answer must not become the
    entry the next GET is served from."""
    email = new_email("mlhead")
    path = MODELS + "?probe=" + secrets.token_hex(4)      # a key of its own
    h = httpx.head(cgw.url(path), headers=auth(email), timeout=30)
    assert h.status_code == 200 and h.content == b""
    r1 = httpx.get(cgw.url(path), headers=auth(email), timeout=30)
    r2 = httpx.get(cgw.url(path), headers=auth(email), timeout=30)
    assert r1.status_code == r2.status_code == 200
    assert r1.headers["x-cache"] == "MISS" and r2.headers["x-cache"] == "HIT"
    assert {m["id"] for m in r2.json()["data"]} == {"gpt-4o-mini",
                                                     "text-embedding-3-small"}
    assert r2.content == r1.content


# ------------------------------------------------------------ embeddings

def test_identical_embeddings_hit_at_zero_cost_sdk(cgw, c_up):
    email = new_email("emb")
    client = openai.OpenAI(base_url=cgw.openai_base, api_key=make_token(email),
                           max_retries=0)
    text = "four words to embed " + secrets.token_hex(4)      # 5 words
    first = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                       input=text)
    second = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                        input=text)
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    cost = 5 * PRICES["text-embedding-3-small"]["input"]
    assert first.headers["cost"] == usd(cost)
    assert second.headers["cost"] == "0"
    assert second.headers["monthlyCost"] == usd(cost)
    assert second.headers["monthlyRequests"] == "2"
    assert first.parse().data[0].embedding == second.parse().data[0].embedding
    assert len(calls(c_up, "/embeddings")) == 1
    docs = sorted(wait_docs(cgw, email, 2), key=lambda d: d["time"])
    assert [(d["provider"], d["cost"]) for d in docs] == [("openai", cost), ("cache", 0)]
    assert all(d["status"] == 200 for d in docs)
    m = cgw.db().months.find_one({"email": email})
    assert m["requests"] == 2 and m["spent"] == cost
    assert m["reserved"] == 0 and m["holds"] == {}


def test_different_body_misses(cgw, c_up):
    email = new_email("embdiff")
    text = "same words " + secrets.token_hex(4)
    bodies = [embed_body(text), embed_body(text + " more"), embed_body(text, dimensions=4),
              # the same JSON with other bytes is another key: byte-identical only
              embed_body(text).replace(b'", "', b'","')]
    got = [post_embed(cgw, email, b) for b in bodies]
    assert [r.status_code for r in got] == [200] * 4
    assert [r.headers["x-cache"] for r in got] == ["MISS"] * 4
    assert len(calls(c_up, "/embeddings")) == 4
    again = post_embed(cgw, email, bodies[2])
    assert again.headers["x-cache"] == "HIT" and again.json() == got[2].json()
    assert len(calls(c_up, "/embeddings")) == 4


def test_hit_for_another_user_charges_that_user_a_request(cgw, c_up):
    body = embed_body()
    a, b = new_email("emba"), new_email("embb")
    assert post_embed(cgw, a, body).headers["x-cache"] == "MISS"
    r = post_embed(cgw, b, body)
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
    assert r.headers["cost"] == "0" and r.headers["monthlyRequests"] == "1"
    docs = wait_docs(cgw, b, 1)
    assert docs[0]["provider"] == "cache" and docs[0]["cost"] == 0
    m = cgw.db().months.find_one({"email": b})
    assert m["requests"] == 1 and m["spent"] == 0
    assert len(calls(c_up, "/embeddings")) == 1


@pytest.mark.expect_log(r"AIP01310")
def test_embeddings_error_is_never_cached(cgw, c_up):
    email = new_email("emberr")
    body = embed_body()
    c_up.next(status=500, count=2, path="/embeddings")
    r1, r2 = post_embed(cgw, email, body), post_embed(cgw, email, body)
    assert (r1.status_code, r2.status_code) == (500, 500)
    assert r1.headers["x-cache"] == r2.headers["x-cache"] == "MISS"
    assert len(calls(c_up, "/embeddings")) == 2
    r3, r4 = post_embed(cgw, email, body), post_embed(cgw, email, body)
    assert (r3.status_code, r4.status_code) == (200, 200)
    assert (r3.headers["x-cache"], r4.headers["x-cache"]) == ("MISS", "HIT")
    assert len(calls(c_up, "/embeddings")) == 3
    m = cgw.db().months.find_one({"email": email})
    # The two failures cost nothing and are not counted; the hit is.
    assert m["requests"] == 2 and m["reserved"] == 0


def test_embeddings_not_cached_where_not_enabled(cgw, c_up):
    """/proxy has no AIProxyCacheEmbeddings."""
    email = new_email("embproxy")
    body = embed_body()
    got = [post_embed(cgw, email, body, path="/proxy/openai/v1/embeddings")
           for _ in range(2)]
    assert [r.status_code for r in got] == [200, 200]
    assert all("x-cache" not in r.headers for r in got)
    assert len(calls(c_up, "/embeddings")) == 2
    docs = wait_docs(cgw, email, 2)
    assert all(d["provider"] == "openai" and d["cost"] > 0 for d in docs)


# ------------------------------------------------------------ never cached

def test_chat_plain_and_streamed_never_cached(cgw, c_up):
    email = new_email("chat")
    client = openai.OpenAI(base_url=cgw.openai_base, api_key=make_token(email),
                           max_retries=0)
    msg = [{"role": "user", "content": "same question " + secrets.token_hex(4)}]
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                               messages=msg)
        assert "x-cache" not in raw.headers
        assert raw.headers["cost"] != "0"
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=msg, stream=True) as resp:
            assert "x-cache" not in resp.headers
            text = "".join(c.choices[0].delta.content or ""
                           for c in resp.parse() if c.choices)
        assert text == "This is a fake reply."
    assert len(calls(c_up, "/chat/completions")) == 4
    docs = wait_docs(cgw, email, 4)
    assert all(d["provider"] == "openai" and d["cost"] > 0 for d in docs)


# ------------------------------------------------------------ expiry

def test_entries_expire_after_the_ttl(store, c_up):
    g = Gateway(store, c_up, extra_conf="AIProxyCacheTTL 2\n").start()
    try:
        email = new_email("ttl")
        body = embed_body()
        r1 = post_embed(g, email, body)
        t_stored = time.monotonic()
        r2 = post_embed(g, email, body)
        assert (r1.headers["x-cache"], r2.headers["x-cache"]) == ("MISS", "HIT")
        time.sleep(max(0, 3 - (time.monotonic() - t_stored)))
        r3 = post_embed(g, email, body)
        assert r3.status_code == 200 and r3.headers["x-cache"] == "MISS"
        assert len(calls(c_up, "/embeddings")) == 2
        stats = httpx.get(g.url("/api/stats"), headers=auth(ADMIN),
                          timeout=30).json()
        assert stats["cache_ttl"] == 2
    finally:
        g.stop()


def test_ttl_zero_turns_the_cache_off(store, c_up):
    g = Gateway(store, c_up, extra_conf="AIProxyCacheTTL 0\n").start()
    try:
        email = new_email("ttl0")
        body = embed_body()
        got = [post_embed(g, email, body) for _ in range(2)]
        assert all(r.status_code == 200 and "x-cache" not in r.headers for r in got)
        assert len(calls(c_up, "/embeddings")) == 2
    finally:
        g.stop()


# ------------------------------------------------------------ redis

@pytest.fixture(scope="module")
def redis_port():
    if not REDIS_SERVER or not REDIS_CLI:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    if not os.path.exists(SOCACHE_REDIS):
        pytest.skip("%s missing" % SOCACHE_REDIS)
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port, 10, proc), "redis-server did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_cli(port, *args):
    return subprocess.run([REDIS_CLI, "-p", str(port)] + list(args), capture_output=True,
                          text=True, check=True).stdout.strip()


def redis_conf(port):
    # conf.d comes at the end of httpd.conf, after the shipped AIProxyCache
    # shmcb line: this later line replaces it.
    return ("LoadModule socache_redis_module %s\nAIProxyCache redis:127.0.0.1:%d\n"
            % (SOCACHE_REDIS, port))


def test_redis_cache_shared_by_two_gateways(store, c_up, redis_port):
    conf = redis_conf(redis_port)
    g1 = Gateway(store, c_up, extra_conf=conf).start()
    g2 = Gateway(store, c_up, extra_conf=conf)
    try:
        g2.start()
        assert redis_cli(redis_port, "dbsize") == "0"
        email = new_email("redis")
        body = embed_body()
        r1 = post_embed(g1, email, body)
        assert r1.status_code == 200 and r1.headers["x-cache"] == "MISS", r1.text
        r2 = post_embed(g1, email, body)
        assert r2.headers["x-cache"] == "HIT" and r2.json() == r1.json()
        assert int(redis_cli(redis_port, "dbsize")) >= 1
        # The other host finds it too.
        r3 = post_embed(g2, email, body)
        assert r3.headers["x-cache"] == "HIT" and r3.headers["cost"] == "0"
        assert len(calls(c_up, "/embeddings")) == 1
        m1 = httpx.get(g1.url(MODELS), headers=auth(email), timeout=30)
        m2 = httpx.get(g2.url(MODELS), headers=auth(email), timeout=30)
        assert (m1.headers["x-cache"], m2.headers["x-cache"]) == ("MISS", "HIT")
        assert m2.json() == m1.json()
        assert len(calls(c_up, "/models")) == 1
        assert int(redis_cli(redis_port, "dbsize")) >= 2
        # Entries carry the TTL (300 s in t/conf/aiproxy.conf).
        keys = redis_cli(redis_port, "--scan").split()
        ttls = [int(redis_cli(redis_port, "ttl", k)) for k in keys]
        assert ttls and all(0 < t <= 300 for t in ttls), ttls
        stats = httpx.get(g1.url("/api/stats"), headers=auth(ADMIN),
                          timeout=30).json()
        assert stats["cache"] == "redis"
    finally:
        g2.stop()
        g1.stop()


@pytest.mark.expect_log(r"AH03478", r"AH03479")
def test_redis_down_is_a_miss_not_an_error(store, c_up):
    """A cache that cannot be reached must not break requests."""
    if not os.path.exists(SOCACHE_REDIS):
        pytest.skip("%s missing" % SOCACHE_REDIS)
    port = free_port()                          # nothing listens there
    g = Gateway(store, c_up, extra_conf=redis_conf(port))
    try:
        g.start()
        email = new_email("redisdown")
        body = embed_body()
        got = [post_embed(g, email, body) for _ in range(2)]
        assert [r.status_code for r in got] == [200, 200], [r.text for r in got]
        assert len(calls(c_up, "/embeddings")) == 2
    finally:
        g.stop()
