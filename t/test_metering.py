"""Metering through the real gateway: the cost of each request, the headers
that report it, the ledger behind them, the requests that must never be
charged, and the reservation under concurrency and across a month's end.

Every expected amount is computed here from conf/prices.conf (parsed by this
file, with Decimal) and the token counts the fake upstream is told to report;
no result is hard-coded."""
import datetime
import gzip
import json
import os
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from conftest import ROOT, make_token
from helpers import auth, chat_cost, new_email

CHAT = "/openai/v1/chat/completions"
EMBED = "/openai/v1/embeddings"
PICO_PER_USD = Decimal(10) ** 12
# Limits on a price line, in tokens rather than USD per 1M tokens.
TOKEN_FIELDS = ("max_output", "context", "image")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


# ------------------------------------------------------------------ prices

def read_prices(path=os.path.join(ROOT, "conf/prices.conf")):
    """{model: {input, cached, cache_write, output}} in pico-dollars per token.

    The file says USD per 1M tokens: 1 USD/1M = 10**12 pico / 10**6 tokens
    = 10**6 pico per token. A missing cached price is the input price (what
    AIProxyPrice documents); missing cache_write and output are 0."""
    prices = {}
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or words[0] != "AIProxyPrice":
                continue
            fields = {}
            for w in words[2:]:
                k, v = w.split("=", 1)
                if k in TOKEN_FIELDS:
                    fields[k] = int(v)
                    continue
                if k == "reasoning":
                    fields[k] = v == "yes"
                    continue
                per_token = Decimal(v) * PICO_PER_USD / Decimal(10 ** 6)
                assert per_token == per_token.to_integral_value(), line
                fields[k] = int(per_token)
            fields.setdefault("cached", fields.get("input", 0))
            fields.setdefault("cache_write", 0)
            fields.setdefault("output", 0)
            prices[words[1]] = fields
    return prices


PRICES = read_prices()


def embed_cost(model, prompt):
    return prompt * PRICES[model]["input"]


def reservation(model, body_len, max_out=None):
    """What admission holds: every body byte as an input token (at the
    dearer of input and cache-write), plus the most output allowed: the
    request's limit, else the model's max_output (AIProxyDefaultMaxTokens
    is not set in conf/)."""
    p = PRICES[model]
    if max_out is None:
        max_out = p.get("max_output", 0)
    return body_len * max(p["input"], p["cache_write"]) + max_out * p["output"]


def pico(usd_text):
    """A USD decimal string from a header or body, as exact pico-dollars."""
    d = Decimal(usd_text) * PICO_PER_USD
    assert d == d.to_integral_value(), usd_text
    return int(d)


# ------------------------------------------------------------------ helpers

def sdk(gw, email, **kw):
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=gw.openai_base, api_key=make_token(email), **kw)


def usage_header(prompt, completion=0, cached=0):
    return {"X-Fake-Usage": json.dumps({"prompt_tokens": prompt,
                                        "completion_tokens": completion,
                                        "cached_tokens": cached})}


def month_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")


def month_docs(gw, email):
    return list(gw.db().months.find({"email": email}))


def month_doc(gw, email):
    docs = month_docs(gw, email)
    assert len(docs) == 1, docs
    return docs[0]


def request_docs(gw, email):
    return list(gw.db().requests.find({"email": email}).sort("time", 1))


def assert_settled(m):
    """No money is left on hold: reserved 0, no open holds, load = spent."""
    assert m["reserved"] == 0, m
    assert m["holds"] == {}, m
    assert m["load"] == m["spent"], m


def chat_body(words=3, **extra):
    body = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": " ".join(["word"] * words)}]}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def upstream_paths(up):
    return [r["path"] for r in up.requests()]


# ------------------------------------------------------------------ cost, headers, ledger

def test_chat_cost_headers_and_ledger_with_cached_tokens(gateway, up):
    email = new_email("meter-chat")
    client = sdk(gateway, email)
    model = "gpt-4o-mini"
    calls = [  # (prompt, completion, cached, max_tokens)
        (1234, 567, 1000, None),
        (40, 7, 0, 300),
        (999, 1, 999, None),          # everything cached
    ]
    total = 0
    for n, (prompt, completion, cached, max_tokens) in enumerate(calls, 1):
        extra = {} if max_tokens is None else {"max_tokens": max_tokens}
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hello there world"}],
            extra_headers=usage_header(prompt, completion, cached), **extra)
        reply = raw.parse()
        assert reply.usage.prompt_tokens == prompt
        assert reply.usage.prompt_tokens_details.cached_tokens == cached
        expected = chat_cost(model, prompt, completion, cached)
        total += expected
        assert pico(raw.headers["cost"]) == expected
        assert pico(raw.headers["monthlyCost"]) == total
        assert raw.headers["monthlyRequests"] == str(n)

        # The body the client sent: its length is what was held for input.
        sent = up.requests()[-1]
        assert sent["path"] == "/v1/chat/completions"
        body_len = len(raw.http_request.content)

        doc = request_docs(gateway, email)[-1]
        assert doc["endpoint"] == "chat/completions"
        assert doc["model"] == model
        assert doc["month"] == month_now()
        assert doc["input_tokens"] == prompt - cached
        assert doc["cached_tokens"] == cached
        assert doc["output_tokens"] == completion
        assert doc["cost"] == expected
        assert doc["status"] == 200
        assert doc["estimated"] is False
        assert doc["reserved"] == reservation(model, body_len, max_tokens)

    m = month_doc(gateway, email)
    assert m["_id"] == "%s|%s" % (email, month_now())
    assert m["spent"] == total and m["requests"] == len(calls)
    assert_settled(m)
    assert sum(d["cost"] for d in request_docs(gateway, email)) == total


def test_embeddings_cost_headers_and_ledger(gateway, up):
    email = new_email("meter-embed")
    client = sdk(gateway, email)
    model = "text-embedding-3-small"

    # The fake counts words: 3 + 2 prompt tokens. Inputs are unique: the
    # gateway may cache identical embeddings requests (AIProxyCacheEmbeddings).
    nonce = secrets.token_hex(4)
    raw = client.embeddings.with_raw_response.create(
        model=model, input=["one two " + nonce, "four five"])
    assert len(raw.parse().data) == 2
    first = embed_cost(model, 5)
    assert pico(raw.headers["cost"]) == first
    assert raw.headers["monthlyRequests"] == "1"
    body_len = len(up.requests()[-1]["body"].encode())

    raw = client.embeddings.with_raw_response.create(
        model=model, input="x " * 20000 + nonce, extra_headers=usage_header(17777))
    second = embed_cost(model, 17777)
    assert pico(raw.headers["cost"]) == second
    assert pico(raw.headers["monthlyCost"]) == first + second
    assert raw.headers["monthlyRequests"] == "2"

    docs = request_docs(gateway, email)
    assert [d["input_tokens"] for d in docs] == [5, 17777]
    assert [d["output_tokens"] for d in docs] == [0, 0]
    assert [d["cached_tokens"] for d in docs] == [0, 0]
    assert [d["cost"] for d in docs] == [first, second]
    assert all(d["status"] == 200 and d["estimated"] is False and
               d["endpoint"] == "embeddings" for d in docs)
    # No output price: the hold is the body alone.
    assert docs[0]["reserved"] == reservation(model, body_len)
    m = month_doc(gateway, email)
    assert m["spent"] == first + second and m["requests"] == 2
    assert_settled(m)


class SpoofingUpstream:
    """A provider that sends its own cost, monthlyCost, monthlyRequests and
    costMax headers (in assorted letter case): the gateway must replace them.
    The shared fake upstream cannot send arbitrary headers, hence this."""

    SPOOF = [("cost", "999"), ("Cost", "998"), ("monthlyCost", "12345"),
             ("MONTHLYREQUESTS", "777"), ("monthlyRequests", "778"),
             ("costMax", "0.5")]

    def __init__(self):
        spoof = self.SPOOF
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                outer.hits += 1
                body = json.dumps({
                    "id": "chatcmpl-spoof", "object": "chat.completion",
                    "created": int(time.time()), "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "hi"}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10,
                              "total_tokens": 110},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in spoof:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_gateway_headers_replace_the_upstreams(make_gateway):
    spoof = SpoofingUpstream()
    try:
        gw = make_gateway(upstream=spoof).start()
        email = new_email("meter-spoof")
        r = httpx.post(gw.url(CHAT), content=chat_body(), headers=auth(email), timeout=30)
        assert r.status_code == 200, r.text
        assert spoof.hits == 1
        expected = chat_cost("gpt-4o-mini", 100, 10)
        assert r.headers.get_list("cost") == [r.headers["cost"]]
        assert pico(r.headers["cost"]) == expected
        assert r.headers.get_list("monthlyCost") == [r.headers["monthlyCost"]]
        assert pico(r.headers["monthlyCost"]) == expected
        assert r.headers.get_list("monthlyRequests") == ["1"]
        # costMax belongs to streams; a provider's must not reach the client.
        assert "costMax" not in r.headers
    finally:
        spoof.stop()


@pytest.mark.expect_log(r"AIP01310")
def test_upstream_500_is_not_counted_and_releases_hold(gateway, up):
    """Recorded at $0, yet no request in monthlyRequests: it was not
    charged."""
    email = new_email("meter-500")
    client = sdk(gateway, email)
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Fake-Status": "500"})
    h = ei.value.response.headers
    assert ei.value.status_code == 500
    assert h["cost"] == "0" and h["monthlyCost"] == "0"
    assert h["monthlyRequests"] == "0"
    assert len(up.requests()) == 1
    m = month_doc(gateway, email)
    assert m["spent"] == 0 and m["requests"] == 0
    assert_settled(m)
    [doc] = request_docs(gateway, email)
    assert doc["status"] == 500 and doc["cost"] == 0 and doc["estimated"] is False


# ------------------------------------------------------------------ never charged

def assert_untouched(gw, up, email):
    assert up.requests() == [], "the upstream was called"
    assert month_docs(gw, email) == [], "a month document was written"
    assert request_docs(gw, email) == [], "a request was recorded"


def assert_json_error(r, status, code=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["message"]
    if code:
        assert err["code"] == code, err
    return err


def test_bad_json_is_400_without_charge(gateway, up):
    email = new_email("reject-json")
    r = httpx.post(gateway.url(CHAT), headers=auth(email), timeout=30,
                   content=b'{"model": "gpt-4o-mini", "messages": [')
    assert_json_error(r, 400)
    assert_untouched(gateway, up, email)


def test_duplicate_model_keys_are_400(gateway, up):
    email = new_email("reject-dup")
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
            b'"model":"gpt-4o"}')
    r = httpx.post(gateway.url(CHAT), headers=auth(email), content=body, timeout=30)
    assert_json_error(r, 400)
    assert_untouched(gateway, up, email)


def test_disallowed_model_is_403_without_charge(gateway, up):
    email = new_email("reject-model")
    with pytest.raises(openai.PermissionDeniedError) as ei:
        sdk(gateway, email).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 403
    assert "gpt-4o" in ei.value.response.json()["error"]["message"]
    assert_untouched(gateway, up, email)


def test_unknown_endpoint_is_404_without_charge(gateway, up):
    email = new_email("reject-404")
    r = httpx.post(gateway.url("/openai/v1/images/generations"), headers=auth(email),
                   json={"model": "gpt-4o-mini", "prompt": "a cat"}, timeout=30)
    assert_json_error(r, 404)
    assert_untouched(gateway, up, email)


def test_body_over_max_body_is_413(make_gateway, up):
    gw = make_gateway("AIProxyMaxBody 2048\n").start()
    email = new_email("reject-413")
    big = chat_body(words=600)           # "word " x 600: over 2048 bytes
    assert len(big) > 2048
    r = httpx.post(gw.url(CHAT), headers=auth(email), content=big, timeout=30)
    assert_json_error(r, 413)
    # Without a Content-Length (chunked), the limit holds while reading.
    r = httpx.post(gw.url(CHAT), headers=auth(email), timeout=30,
                   content=(big[i:i + 500] for i in range(0, len(big), 500)))
    assert_json_error(r, 413)
    assert_untouched(gw, up, email)
    # Just under the limit is fine.
    small = chat_body(words=300)
    assert len(small) <= 2048
    r = httpx.post(gw.url(CHAT), headers=auth(email), content=small, timeout=30)
    assert r.status_code == 200, r.text


def test_content_encoded_body_is_415(gateway, up):
    email = new_email("reject-415")
    r = httpx.post(gateway.url(CHAT), timeout=30, content=gzip.compress(chat_body()),
                   headers=dict(auth(email), **{"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"}))
    assert_json_error(r, 415)
    assert_untouched(gateway, up, email)


# ------------------------------------------------------------------ concurrency

def fire_together(n, fn):
    """Runs fn(i) for i < n on n threads released at the same instant."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_parallel_requests_admit_exactly_what_the_budget_allows(gateway, up):
    email = new_email("race-cap")
    max_tokens = 1000
    body = chat_body(words=20, max_tokens=max_tokens)
    hold = reservation("gpt-4o-mini", len(body), max_tokens)
    cap = hold + hold // 2              # room for one reservation, not two
    gateway.set_cap(email, cap)
    # The one admitted request costs exactly its reservation, so it still
    # leaves no room for another after it settles, whatever the timing.
    headers = dict(auth(email), **usage_header(len(body), max_tokens))
    headers["X-Fake-Delay-Ms"] = "200"
    assert chat_cost("gpt-4o-mini", len(body), max_tokens) == hold

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with httpx.Client(timeout=60, limits=limits) as c:
        results = fire_together(100, lambda i: c.post(gateway.url(CHAT), content=body,
                                                       headers=headers))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and codes.count(429) == 99, codes
    assert upstream_paths(up) == ["/v1/chat/completions"]
    for r in results:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "insufficient_quota"
    m = month_doc(gateway, email)
    assert m["spent"] == hold <= cap
    assert m["requests"] == 1
    assert_settled(m)
    assert len(request_docs(gateway, email)) == 1


def test_many_users_many_requests_add_up_to_the_pico(gateway, up):
    """2,000 requests at concurrency 32 from 20 users, each with its own
    random usage: headers, month documents and request documents agree.
    Each body is long enough for its prompt: no input is larger than its
    bytes, the gateway's input bound."""
    rng = random.Random(20261123)
    users = [new_email("load%02d" % i) for i in range(20)]
    tokens = {u: make_token(u) for u in users}
    plan = []
    for i in range(2000):
        user = users[i % len(users)]
        prompt = rng.randint(1, 3000)
        if rng.random() < 0.2:
            plan.append((user, EMBED, "text-embedding-3-small",
                         json.dumps({"model": "text-embedding-3-small",  # unique:
                                     "input": "text %d %s %s" % (i, users[0],  # no cache
                                                                 "x" * prompt)
                                     }).encode(),
                         prompt, 0, 0))
        else:
            completion = rng.randint(0, 600)
            cached = rng.choice([0, 0, rng.randint(0, prompt)])
            plan.append((user, CHAT, "gpt-4o-mini",
                         chat_body(words=prompt, max_tokens=600), prompt, completion,
                         cached))
    rng.shuffle(plan)
    # Each user's first request goes alone: racing first requests are
    # test_parallel_first_requests_of_a_new_user's subject, not this one's.
    firsts = []
    for user in users:
        i = next(i for i, item in enumerate(plan) if item[0] == user)
        firsts.append(plan.pop(i))

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    client = httpx.Client(timeout=60, limits=limits)

    def one(item):
        user, path, model, body, prompt, completion, cached = item
        h = {"Authorization": "Bearer " + tokens[user],
             "Content-Type": "application/json"}
        h.update(usage_header(prompt, completion, cached))
        r = client.post(gateway.url(path), content=body, headers=h)
        return item, r.status_code, r.headers.get("cost"), \
            r.headers.get("monthlyCost"), r.headers.get("monthlyRequests"), r.text

    t0 = time.time()
    try:
        results = [one(item) for item in firsts]
        with ThreadPoolExecutor(32) as pool:
            results += list(pool.map(one, plan))
    finally:
        client.close()
    elapsed = time.time() - t0

    bad = [(s, t) for _, s, _, _, _, t in results if s != 200]
    assert not bad, bad[:5]
    per_user = {u: [] for u in users}
    for item, _, cost, monthly, count, _ in results:
        user, path, model, _, prompt, completion, cached = item
        expected = (embed_cost(model, prompt) if path == EMBED
                    else chat_cost(model, prompt, completion, cached))
        assert pico(cost) == expected, item
        per_user[user].append((int(count), pico(monthly), pico(cost)))

    db = gateway.db()
    for user, rows in per_user.items():
        header_sum = sum(c for _, _, c in rows)
        m = month_doc(gateway, user)
        docs = list(db.requests.find({"email": user}, {"cost": 1}))
        assert m["spent"] == header_sum, user
        assert sum(d["cost"] for d in docs) == header_sum, user
        assert m["requests"] == len(rows) == len(docs) == 100, user
        assert_settled(m)
        assert max(n for n, _, _ in rows) == len(rows), user
        assert max(monthly for _, monthly, _ in rows) == header_sum, user
        if gateway.store.local:
            # mongo-java-server's memory backend answers findAndModify with
            # the live document, encoded after its lock is released: a
            # concurrent update can show through. Only the final state is
            # certain there.
            continue
        # MongoDB returns each settlement's own post-image: the counts are
        # 1..n, and each step of monthlyCost is that response's cost.
        rows.sort()
        assert [n for n, _, _ in rows] == list(range(1, len(rows) + 1)), user
        previous = 0
        for n, monthly, cost in rows:
            assert monthly - previous == cost, (user, n)
            previous = monthly
    assert sum(1 for r in up.requests()) == 2000
    print("2000 requests in %.1f s" % elapsed)


@pytest.mark.parametrize("round_", range(3))
def test_parallel_first_requests_of_a_new_user(gateway, up, round_):
    """30 first requests of a new user at once: one month document, no
    refusal (a race between creating the document and reserving on it must
    not look like being over the cap)."""
    email = new_email("race-new")
    token = make_token(email)
    body = chat_body()
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=30)) as c:
        results = fire_together(30, lambda i: c.post(
            gateway.url(CHAT), content=body,
            headers={"Authorization": "Bearer " + token}))
    assert [r.status_code for r in results] == [200] * 30, \
        [(r.status_code, r.text) for r in results if r.status_code != 200]
    docs = month_docs(gateway, email)
    assert len(docs) == 1, docs
    assert docs[0]["_id"] == "%s|%s" % (email, month_now())
    assert docs[0]["requests"] == 30
    assert_settled(docs[0])
    assert len(request_docs(gateway, email)) == 30
    counts = [int(r.headers["monthlyRequests"]) for r in results]
    assert max(counts) == 30
    if not gateway.store.local:    # see test_many_users_many_requests_add_up_to_the_pico
        assert sorted(counts) == list(range(1, 31))


# ------------------------------------------------------------------ month rollover

@pytest.mark.skipif(not os.path.exists(FAKETIME_LIB),
                    reason="libfaketime missing (%s): apt-get install faketime"
                    % FAKETIME_LIB)
def test_month_rollover(make_gateway, up):
    """The gateway's clock (libfaketime) starts 4 s before December: one
    request in November, one after midnight UTC; each month its own document
    and its own count."""
    fake_start = datetime.datetime(2026, 11, 30, 23, 59, 56)
    gw = make_gateway(env={
        "LD_PRELOAD": FAKETIME_LIB,
        # "@": start at this time when httpd starts and let the clock run.
        "FAKETIME": "@" + fake_start.strftime("%Y-%m-%d %H:%M:%S"),
        "TZ": "UTC",
        "FAKETIME_NO_CACHE": "1",
        # libmongoc's timeouts and mod_proxy's keep-alive run on the
        # monotonic clock: leave it real.
        "DONT_FAKE_MONOTONIC": "1",
    })
    started = time.time()
    gw.start()
    midnight = started + (datetime.datetime(2026, 12, 1) - fake_start).total_seconds()
    email = new_email("rollover")
    body = chat_body()
    headers = dict(auth(email), **usage_header(10, 5))
    with httpx.Client(timeout=30) as c:
        r1 = c.post(gw.url(CHAT), content=body, headers=headers)
        sent_first = time.time()
        assert sent_first < midnight - 0.5, "httpd started too slowly for the fake clock"
        time.sleep(max(0.0, midnight - time.time()) + 1.5)
        r2 = c.post(gw.url(CHAT), content=body, headers=headers)
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
    cost = chat_cost("gpt-4o-mini", 10, 5)
    assert r1.headers["monthlyRequests"] == "1"
    assert r2.headers["monthlyRequests"] == "1"
    assert pico(r2.headers["monthlyCost"]) == cost

    months = {d["month"]: d for d in month_docs(gw, email)}
    assert sorted(months) == ["2026-11", "2026-12"]
    for month, m in months.items():
        assert m["_id"] == "%s|%s" % (email, month)
        assert m["requests"] == 1 and m["spent"] == cost
        assert_settled(m)
    docs = request_docs(gw, email)
    assert sorted(d["month"] for d in docs) == ["2026-11", "2026-12"]
