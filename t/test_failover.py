"""Failover, resting and key rotation. Each attempt is one provider and one
of its keys; an attempt that answers 429 or 5xx, or cannot connect, is
replaced by the next candidate before any byte reaches the client, its key
rested for AIProxyRest seconds. The client is charged once, for the attempt
that answered.

Two fake upstream processes, alpha and beta; providers that share one
upstream use their own path prefix (the fake answers on any prefix), so the
upstream's records tell which provider and which key each attempt used."""
import json
import re
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from conftest import PROVIDER_KEY, TOKEN_SECRET, Gateway, Upstream, free_port, make_token, usd
from helpers import new_email, wait_docs

# Failing providers are the subject: their warnings and mod_proxy's
# connection errors are expected throughout.
pytestmark = pytest.mark.expect_log(r"AIP01310", r"AIP01601", r"AH00957", r"AH01114")

KEYS = {name: "sk-%s-%s" % (name.lower(), secrets.token_hex(12))
        for name in ("ALPHA_KEY", "BETA_KEY", "DEAD_KEY", "DEAD2_KEY", "DUO1", "DUO2",
                     "K1", "K2", "K3")}
PRICE = {"input": 1_000_000, "output": 2_000_000}      # $1 / $2 per 1M tokens
MSG = [{"role": "user", "content": "fail me over"}]     # 3 words
REST = 2


def expected_cost(prompt=3, completion=5):
    return prompt * PRICE["input"] + completion * PRICE["output"]


@pytest.fixture(scope="module")
def alpha():
    with Upstream("alpha") as u:
        yield u


@pytest.fixture(scope="module")
def beta():
    with Upstream("beta") as u:
        yield u


def provider(name, base, *keyvars):
    keys = " ".join("key=env:" + k for k in keyvars)
    return ('AIProxyProvider %s "%s" api=openai %s\n'
            '<Proxy "%s">\n    ProxySet keepalive=On timeout=300 connectiontimeout=5\n'
            '</Proxy>\n' % (name, base, keys, base))


def failover_conf(alpha, beta, extra=""):
    dead = "http://127.0.0.1:%d/v1" % free_port()      # nothing listens there
    dead2 = "http://127.0.0.1:%d/v1" % free_port()
    models = ["fo-model", "fo-dead", "fo-alldead", "fo-duo", "fo-rot"]
    return "".join([
        provider("alpha", alpha.base + "/v1", "ALPHA_KEY"),
        provider("beta", beta.base + "/v1", "BETA_KEY"),
        provider("dead", dead, "DEAD_KEY"),
        provider("dead2", dead2, "DEAD2_KEY"),
        provider("duo", alpha.base + "/duo/v1", "DUO1", "DUO2"),
        provider("rot", beta.base + "/rot/v1", "K1", "K2", "K3"),
        "".join("AIProxyPrice %s input=1.00 output=2.00 max_output=1000\n" % m for m in models),
        "AIProxyModel fo-model alpha=alpha-name beta=beta-name\n",
        "AIProxyModel fo-dead dead beta\n",
        "AIProxyModel fo-alldead dead dead2\n",
        "AIProxyModel fo-duo duo\n",
        "AIProxyModel fo-rot rot\n",
        "AIProxyRest %d\n" % REST,
        extra,
    ])


@pytest.fixture
def gw(store, upstream, alpha, beta):
    """A fresh gateway per test: resting state starts empty."""
    alpha.reset()
    beta.reset()
    with Gateway(store, upstream, extra_conf=failover_conf(alpha, beta), env=KEYS) as g:
        yield g


def client(gw, email):
    # max_retries=0: the SDK must not hide what the gateway answered.
    return openai.OpenAI(base_url=gw.url("/v1"), api_key=make_token(email), max_retries=0)


def under(records, prefix):
    """Records of requests that reached a provider mounted at prefix."""
    return [r for r in records if r["path"].startswith(prefix + "/")]


def access_line(gw, email):
    deadline = time.time() + 5
    while time.time() < deadline:
        lines = [l for l in gw.access_log().splitlines() if "email=" + email in l]
        if lines:
            return lines
        time.sleep(0.05)
    raise AssertionError("no access log line for %s" % email)


def assert_no_keys(gw):
    text = gw.access_log() + gw.error_log()
    for name, key in list(KEYS.items()) + [("OPENAI", PROVIDER_KEY), ("TOKEN", TOKEN_SECRET)]:
        assert key not in text, "%s leaked into the logs" % name


def assert_charged_once(gw, email, cost, provider):
    docs = wait_docs(gw, email)
    time.sleep(0.2)
    docs = list(gw.db().requests.find({"email": email}))
    assert len(docs) == 1, docs
    assert docs[0]["provider"] == provider
    assert docs[0]["cost"] == cost and docs[0]["status"] == 200
    m = gw.db().months.find_one({"email": email})
    assert m["requests"] == 1 and m["spent"] == cost
    assert m["reserved"] == 0 and m["holds"] == {}


# ------------------------------------------------------- one failure

@pytest.mark.parametrize("status", [429, 500, 503])
def test_failed_first_provider_fails_over(gw, alpha, beta, status):
    alpha.next(status=status)
    email = new_email("fo%d" % status)
    raw = client(gw, email).chat.completions.with_raw_response.create(
        model="fo-model", messages=MSG)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "This is a fake reply."
    assert raw.headers["cost"] == usd(expected_cost())
    a, b = alpha.requests(), beta.requests()
    assert len(a) == 1 and len(b) == 1
    assert a[0]["headers"]["authorization"] == "Bearer " + KEYS["ALPHA_KEY"]
    assert b[0]["headers"]["authorization"] == "Bearer " + KEYS["BETA_KEY"]
    # Each provider got the body with its own name for the model.
    assert json.loads(a[0]["body"])["model"] == "alpha-name"
    assert json.loads(b[0]["body"])["model"] == "beta-name"
    assert json.loads(b[0]["body"])["messages"] == MSG
    assert a[0]["time"] <= b[0]["time"]
    assert_charged_once(gw, email, expected_cost(), "beta")
    assert "provider alpha key #1 failed" in gw.error_log()
    assert_no_keys(gw)


def test_refused_connection_fails_over(gw, alpha, beta):
    email = new_email("forefused")
    raw = client(gw, email).chat.completions.with_raw_response.create(
        model="fo-dead", messages=MSG)
    assert raw.http_response.status_code == 200
    assert raw.headers["cost"] == usd(expected_cost())
    b = beta.requests()
    assert len(b) == 1 and json.loads(b[0]["body"])["model"] == "fo-dead"
    assert_charged_once(gw, email, expected_cost(), "beta")
    assert "provider dead key #1 failed" in gw.error_log()
    assert_no_keys(gw)


def test_stream_fails_over(gw, alpha, beta):
    alpha.next(status=429)
    email = new_email("fostream")
    chunks = list(client(gw, email).chat.completions.create(model="fo-model", messages=MSG,
                                                            stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == "This is a fake reply."
    assert len(alpha.requests()) == 1 and len(beta.requests()) == 1
    assert_charged_once(gw, email, expected_cost(), "beta")


def test_second_key_of_one_provider(gw, alpha, beta):
    alpha.next(status=429, path="/duo/")
    email = new_email("duo")
    raw = client(gw, email).chat.completions.with_raw_response.create(
        model="fo-duo", messages=MSG)
    assert raw.http_response.status_code == 200
    seen = under(alpha.requests(), "/duo")
    assert len(seen) == 2
    used = [r["headers"]["authorization"] for r in seen]
    assert sorted(used) == sorted("Bearer " + KEYS[k] for k in ("DUO1", "DUO2"))
    assert seen[0]["controls"].get("status") == 429 and "status" not in seen[1]["controls"]
    assert_charged_once(gw, email, expected_cost(), "duo")
    assert re.search(r"provider duo key #[12] failed", gw.error_log())
    assert_no_keys(gw)


def test_access_log_names_the_provider_that_answered(gw, alpha, beta):
    alpha.next(status=500)
    email = new_email("folog")
    client(gw, email).chat.completions.create(model="fo-model", messages=MSG)
    lines = access_line(gw, email)
    assert len(lines) == 1
    assert re.search(r"\bbeta\b", lines[0]), \
        "access log line does not name the provider: %r" % lines[0]
    assert_no_keys(gw)


# ------------------------------------------------------- resting

def test_failed_key_rests_then_is_tried_again(gw, alpha, beta):
    """One keep-alive connection, so one child: its requests see the rest."""
    email = new_email("rest")
    alpha.next(status=500)
    with httpx.Client(timeout=30) as http:
        c = openai.OpenAI(base_url=gw.url("/v1"), api_key=make_token(email),
                          max_retries=0, http_client=http)
        c.chat.completions.create(model="fo-model", messages=MSG)
        failed_at = time.monotonic()
        assert len(alpha.requests()) == 1 and len(beta.requests()) == 1
        for _ in range(3):
            c.chat.completions.create(model="fo-model", messages=MSG)
        assert len(alpha.requests()) == 1, "a rested key was tried first"
        assert len(beta.requests()) == 4
        time.sleep(max(0, REST + 0.3 - (time.monotonic() - failed_at)))
        c.chat.completions.create(model="fo-model", messages=MSG)
        assert len(alpha.requests()) == 2, "the key was not tried again after its rest"
        assert len(beta.requests()) == 4
    docs = wait_docs(gw, email, 5)
    assert [d["provider"] for d in sorted(docs, key=lambda d: d["time"])][-1] == "alpha"


def test_failed_key_rests_for_the_whole_gateway(gw, alpha, beta):
    """After a failure, requests on new connections (served by any child)
    go to the healthy provider first too."""
    alpha.next(status=500)
    email = new_email("restall")
    client(gw, email).chat.completions.create(model="fo-model", messages=MSG)
    assert len(alpha.requests()) == 1

    def one(_):
        with httpx.Client(timeout=30) as http:       # a new connection each
            r = http.post(gw.url("/v1/chat/completions"),
                          headers={"Authorization": "Bearer " + make_token(email)},
                          json={"model": "fo-model", "messages": MSG})
            return r.status_code

    with ThreadPoolExecutor(6) as ex:
        assert set(ex.map(one, range(12))) == {200}
    assert len(alpha.requests()) == 1, \
        "%d requests within AIProxyRest went to the failed key" % (len(alpha.requests()) - 1)
    assert len(beta.requests()) == 13


def test_rested_key_is_still_a_last_resort(gw, alpha, beta):
    email = new_email("lastresort")
    with httpx.Client(timeout=30) as http:
        c = openai.OpenAI(base_url=gw.url("/v1"), api_key=make_token(email),
                          max_retries=0, http_client=http)
        alpha.next(status=500)
        c.chat.completions.create(model="fo-model", messages=MSG)     # alpha rests
        beta.next(status=500)
        raw = c.chat.completions.with_raw_response.create(model="fo-model", messages=MSG)
        assert raw.http_response.status_code == 200
    # beta (fresh) first, then the resting alpha answered.
    assert len(beta.requests()) == 2 and len(alpha.requests()) == 2
    assert beta.requests()[-1]["time"] <= alpha.requests()[-1]["time"]
    docs = sorted(wait_docs(gw, email, 2), key=lambda d: d["time"])
    assert [d["provider"] for d in docs] == ["beta", "alpha"]


# ------------------------------------------------------- every candidate fails

def assert_not_charged(gw, email):
    docs = wait_docs(gw, email)
    time.sleep(0.2)
    docs = list(gw.db().requests.find({"email": email}))
    assert len(docs) == 1 and docs[0]["cost"] == 0
    m = gw.db().months.find_one({"email": email})
    assert m["spent"] == 0 and m["reserved"] == 0 and m["holds"] == {}
    return docs[0]


def test_all_candidates_answer_errors(gw, alpha, beta):
    alpha.next(status=500)
    beta.next(status=503)
    email = new_email("allfail")
    r = httpx.post(gw.url("/v1/chat/completions"),
                   headers={"Authorization": "Bearer " + make_token(email)},
                   json={"model": "fo-model", "messages": MSG}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "error" in r.json()
    assert len(alpha.requests()) == 1 and len(beta.requests()) == 1
    doc = assert_not_charged(gw, email)
    assert doc["status"] == 503
    assert_no_keys(gw)


def test_all_candidates_rate_limited_sdk(gw, alpha, beta):
    alpha.next(status=429)
    beta.next(status=429)
    email = new_email("all429")
    with pytest.raises(openai.RateLimitError) as e:
        client(gw, email).chat.completions.create(model="fo-model", messages=MSG)
    assert e.value.status_code == 429
    assert len(alpha.requests()) == 1 and len(beta.requests()) == 1
    assert_not_charged(gw, email)


def test_all_candidates_refuse_connections(gw, alpha, beta):
    email = new_email("alldead")
    t0 = time.monotonic()
    r = httpx.post(gw.url("/v1/chat/completions"),
                   headers={"Authorization": "Bearer " + make_token(email)},
                   json={"model": "fo-alldead", "messages": MSG}, timeout=30)
    assert time.monotonic() - t0 < 5
    assert r.status_code in (502, 503), r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] in ("upstream_unavailable", "upstream_error")
    assert "not charged" in err["message"]
    assert_not_charged(gw, email)
    assert_no_keys(gw)


def test_max_attempts_bounds_the_tries(store, upstream, alpha, beta):
    alpha.reset()
    beta.reset()
    g = Gateway(store, upstream, env=KEYS,
                extra_conf=failover_conf(alpha, beta, "AIProxyMaxAttempts 2\n")).start()
    try:
        beta.next(status=500, count=3, path="/rot/")
        email = new_email("maxatt")
        r = httpx.post(g.url("/v1/chat/completions"),
                       headers={"Authorization": "Bearer " + make_token(email)},
                       json={"model": "fo-rot", "messages": MSG}, timeout=30)
        assert r.status_code == 500, r.text
        seen = under(beta.requests(), "/rot")
        assert len(seen) == 2
        assert len({s["headers"]["authorization"] for s in seen}) == 2
        assert_not_charged(g, email)
    finally:
        g.stop()


# ------------------------------------------------------- key rotation

def rot_keys_used(beta):
    return Counter(r["headers"]["authorization"][len("Bearer "):]
                   for r in under(beta.requests(), "/rot"))


def test_keys_take_turns_on_one_connection(gw, alpha, beta):
    email = new_email("turns1")
    with httpx.Client(timeout=30) as http:
        c = openai.OpenAI(base_url=gw.url("/v1"), api_key=make_token(email),
                          max_retries=0, http_client=http)
        for _ in range(30):
            c.chat.completions.create(model="fo-rot", messages=MSG)
    used = rot_keys_used(beta)
    assert used == {KEYS["K1"]: 10, KEYS["K2"]: 10, KEYS["K3"]: 10}


def test_keys_spread_across_connections(gw, alpha, beta):
    """The turn counter is per child: allow imbalance, but every key is
    used and none carries more than half."""
    email = new_email("turns")
    # One request first, so the burst below is about key turns only
    # (test_metering covers concurrent first requests of a new user).
    one = httpx.post(gw.url("/v1/chat/completions"),
                     headers={"Authorization": "Bearer " + make_token(email)},
                     json={"model": "fo-rot", "messages": MSG}, timeout=30)
    assert one.status_code == 200, one.text
    beta.reset()

    def batch(n):
        with httpx.Client(timeout=30) as http:
            return [http.post(gw.url("/v1/chat/completions"),
                              headers={"Authorization": "Bearer " + make_token(email)},
                              json={"model": "fo-rot", "messages": MSG}).status_code
                    for _ in range(n)]

    with ThreadPoolExecutor(6) as ex:
        statuses = [s for b in ex.map(batch, [10] * 6) for s in b]
    assert statuses == [200] * 60
    used = rot_keys_used(beta)
    assert sum(used.values()) == 60
    assert set(used) == {KEYS["K1"], KEYS["K2"], KEYS["K3"]}, used
    assert max(used.values()) <= 30, used
    wait_docs(gw, email, 61)
    m = gw.db().months.find_one({"email": email})
    assert m["requests"] == 61 and m["spent"] == 61 * expected_cost()
