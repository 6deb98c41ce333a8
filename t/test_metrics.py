"""/metrics (SetHandler aiproxy-metrics): the Prometheus text format 0.0.4,
parsed here by prometheus_client's own parser. Series move by exactly what
was sent; money is exact; labels come from the configuration only, so no
client can add series; an admin token guards it unless the location says
AIProxyMetricsPublic On, and then httpd's Require does."""
import json
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN, Gateway, Store, make_token
from helpers import auth, new_email

CHAT = "/openai/v1/chat/completions"
ROUTE = "/openai/v1"
MSG = [{"role": "user", "content": "count me"}]
CTYPE = "text/plain; version=0.0.4; charset=utf-8"
PICO = Decimal(10) ** 12

EXTRA = """
<IfModule !authz_host_module>
    LoadModule authz_host_module /usr/lib/apache2/modules/mod_authz_host.so
</IfModule>
<Location /metrics-public>
    SetHandler aiproxy-metrics
    AIProxyMetricsPublic On
    Require ip 127.0.0.1
</Location>
<Location /metrics-elsewhere>
    SetHandler aiproxy-metrics
    AIProxyMetricsPublic On
    Require ip 192.0.2.1
</Location>
<Location /metrics-ip-only>
    SetHandler aiproxy-metrics
    Require ip 127.0.0.1
</Location>
"""


@pytest.fixture(scope="module")
def mgw(store, upstream):
    with Gateway(store, upstream, extra_conf=EXTRA) as g:
        yield g


class Scrape:
    """One scrape: its text and its samples by name and labels."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                key = tuple(sorted(s.labels.items()))
                self.samples.setdefault(s.name, {})[key] = s.value

    def get(self, name, **labels):
        return self.samples.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def series(self, name):
        return self.samples.get(name, {})


def scrape(gw, path="/metrics", headers=None):
    r = httpx.get(gw.url(path), headers=auth(ADMIN) if headers is None else headers,
                  timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CTYPE
    return Scrape(r.text)


def delta(before, after, name):
    """What moved in every series of a counter: {labels: change}."""
    out = {}
    for key, v in after.series(name).items():
        d = v - before.series(name).get(key, 0)
        if d:
            out[key] = d
    return out


def req_key(model, status, route=ROUTE, endpoint="chat/completions"):
    return tuple(sorted({"route": route, "endpoint": endpoint, "model": model,
                         "status": str(status)}.items()))


def exact_cost(text, labels):
    """A cost sample's own text, as an exact Decimal (no float)."""
    rx = re.escape("aiproxy_cost_dollars_total{" + labels + "} ") + r"(\S+)"
    m = re.search(rx, text)
    return Decimal(m.group(1)) if m else Decimal(0)


def cost_labels(model, status=200, route=ROUTE, endpoint="chat/completions"):
    return 'route="%s",endpoint="%s",model="%s",status="%s"' % (
        route, endpoint, model, status)


def client(gw, email, **kw):
    return openai.OpenAI(base_url=gw.openai_base, api_key=make_token(email),
                         max_retries=0, **kw)


# ------------------------------------------------------------ who may read

def test_admin_token_required(mgw):
    r = httpx.get(mgw.url("/metrics"), timeout=10)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(mgw.url("/metrics"), headers=auth(new_email("student")), timeout=10)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "not_admin"
    assert "aiproxy_" not in r.text
    r = httpx.get(mgw.url("/metrics"), headers=auth(ADMIN), timeout=10)
    assert r.status_code == 200 and "# TYPE aiproxy_requests_total counter" in r.text
    # Require alone does not make it public: the directive does.
    r = httpx.get(mgw.url("/metrics-ip-only"), timeout=10)
    assert r.status_code == 401, r.text
    r = httpx.post(mgw.url("/metrics"), headers=auth(ADMIN), content=b"{}", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.expect_log(r"AH01630")
def test_public_location_guarded_by_require(mgw):
    s = scrape(mgw, "/metrics-public", headers={})
    assert "aiproxy_uptime_seconds" in s.families
    # The same, refused by httpd itself for an address Require does not name.
    r = httpx.get(mgw.url("/metrics-elsewhere"), timeout=10)
    assert r.status_code == 403
    assert "aiproxy_" not in r.text


def test_public_directive_rejects_bad_value(make_gateway):
    g = make_gateway("<Location /m>\n SetHandler aiproxy-metrics\n"
                     " AIProxyMetricsPublic Maybe\n</Location>\n")
    rc, out = g.configtest()
    assert rc != 0 and "AIProxyMetricsPublic" in out


# ------------------------------------------------------------ the format

def test_every_family_has_help_and_type_and_counters_end_in_total(mgw):
    s = scrape(mgw)
    names = set(re.findall(r"^# TYPE (\S+) (\S+)$", s.text, re.M))
    helps = set(re.findall(r"^# HELP (\S+) ", s.text, re.M))
    assert {n for n, _ in names} == helps
    for name, kind in names:
        assert name.startswith("aiproxy_")
        assert kind in ("counter", "gauge", "histogram"), name
        assert (kind == "counter") == name.endswith("_total"), name
    expected = {"aiproxy_requests_total", "aiproxy_cost_dollars_total",
                "aiproxy_refusals_total", "aiproxy_upstream_latency_seconds",
                "aiproxy_store_latency_seconds", "aiproxy_cache_hits_total",
                "aiproxy_cache_misses_total", "aiproxy_records_pending",
                "aiproxy_leased_total", "aiproxy_lease_writes_total",
                "aiproxy_store_up", "aiproxy_uptime_seconds"}
    assert expected <= {n for n, _ in names}
    assert s.get("aiproxy_store_up") == 1
    assert s.get("aiproxy_uptime_seconds") >= 0


# ------------------------------------------------------------ what moved

@pytest.mark.expect_log(r"AIP01102")
def test_requests_cost_refusals_and_latency_move_exactly(mgw):
    email = new_email("metrics")
    c = client(mgw, email)
    before = scrape(mgw)

    costs = []
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                          messages=MSG)
        assert raw.status_code == 200
        costs.append(Decimal(raw.headers["cost"]))
    # A stream's cost comes in its final SSE comment (README, Streaming).
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                      messages=MSG, stream=True)
    sse = raw.http_response.read().decode()
    costs.append(Decimal(json.loads(re.search(r"^: aiproxy (\{.*\})$", sse,
                                              re.M).group(1))["cost"]))
    # Not allowed on the route; an unreadable token; over the cap.
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=mgw.openai_base, api_key="not-a-token",
                      max_retries=0).chat.completions.create(model="gpt-4o-mini",
                                                             messages=MSG)
    poor = new_email("poor")
    mgw.set_cap(poor, 1)
    with pytest.raises(openai.RateLimitError) as e:
        client(mgw, poor).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert e.value.code == "insufficient_quota"

    after = scrape(mgw)
    assert delta(before, after, "aiproxy_requests_total") == {
        req_key("gpt-4o-mini", 200): 4,
        # An error charged nothing has no model label but "none": a client
        # could vary models x statuses at no cost to fill the table.
        req_key("none", 403): 1,
        req_key("none", 401): 1,
        req_key("none", 429): 1,
    }
    assert delta(before, after, "aiproxy_refusals_total") == {
        (("reason", "model_not_allowed"),): 1,
        (("reason", "invalid_api_key"),): 1,
        (("reason", "insufficient_quota"),): 1,
    }
    # Cost: exactly the three cost headers and the stream's, which is the
    # store's charge for the user; the refusals cost nothing.
    spent = Decimal(mgw.db().months.find_one({"email": email})["spent"]) / PICO
    moved = (exact_cost(after.text, cost_labels("gpt-4o-mini"))
             - exact_cost(before.text, cost_labels("gpt-4o-mini")))
    assert moved == sum(costs) == spent
    assert all(x > 0 for x in costs)
    assert delta(before, after, "aiproxy_cost_dollars_total") == {
        req_key("gpt-4o-mini", 200): pytest.approx(float(spent), abs=1e-12)}

    # Upstream latency: the four that were forwarded, cumulative buckets.
    check_histogram(before, after, "aiproxy_upstream_latency_seconds", exactly=4)
    # The store: at least a reservation and a settlement each.
    check_histogram(before, after, "aiproxy_store_latency_seconds", at_least=8)


def check_histogram(before, after, name, exactly=None, at_least=None):
    buckets = sorted(((float(dict(k)["le"]), v)
                      for k, v in after.series(name + "_bucket").items()))
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == after.get(name + "_count")
    moved = after.get(name + "_count") - before.get(name + "_count")
    if exactly is not None:
        assert moved == exactly
    if at_least is not None:
        assert moved >= at_least
    assert after.get(name + "_sum") > before.get(name + "_sum")
    # Each bucket moved by no more than the count did.
    for le, v in buckets:
        assert 0 <= v - before.get(name + "_bucket", le=le_text(le, before, name)) <= moved


def le_text(le, scrape_, name):
    for key in scrape_.series(name + "_bucket"):
        if float(dict(key)["le"]) == le:
            return dict(key)["le"]
    return "+Inf"


def test_cache_hit_and_miss(mgw):
    c = client(mgw, new_email("cached"))
    before = scrape(mgw)
    text = "embed me " + secrets.token_hex(6)
    first = c.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                  input=text)
    second = c.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                   input=text)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    after = scrape(mgw)
    assert after.get("aiproxy_cache_hits_total") - before.get("aiproxy_cache_hits_total") == 1
    assert (after.get("aiproxy_cache_misses_total")
            - before.get("aiproxy_cache_misses_total")) == 1
    key = req_key("text-embedding-3-small", 200, endpoint="embeddings")
    assert delta(before, after, "aiproxy_requests_total") == {key: 2}
    labels = cost_labels("text-embedding-3-small", endpoint="embeddings")
    assert (exact_cost(after.text, labels) - exact_cost(before.text, labels)
            == Decimal(first.headers["cost"]) + Decimal(second.headers["cost"]))
    assert Decimal(second.headers["cost"]) == 0
    # A cache hit was not forwarded: one upstream answer.
    assert (after.get("aiproxy_upstream_latency_seconds_count")
            - before.get("aiproxy_upstream_latency_seconds_count")) == 1


# ------------------------------------------------------------ bounded labels

def test_clients_cannot_add_series(mgw):
    """Garbage models, endpoints and providers land in fixed labels."""
    email = new_email("garbage")
    before = scrape(mgw)
    n = 30
    for i in range(n):
        junk = 'evil-%s-%d"\\\n' % (secrets.token_hex(4), i)
        r = httpx.post(mgw.url(CHAT), headers=auth(email), timeout=10,
                       json={"model": junk, "messages": MSG})
        assert r.status_code == 403, r.text
        r = httpx.post(mgw.url("/openai/v1/evil-%s" % secrets.token_hex(4)),
                       headers=auth(email), json={}, timeout=10)
        assert r.status_code == 404, r.text
        r = httpx.get(mgw.url("/openai/v1/models/evil-%s" % secrets.token_hex(4)),
                      headers=auth(email), timeout=10)
        assert r.status_code == 404, r.text
    after = scrape(mgw)
    assert "evil" not in after.text
    assert delta(before, after, "aiproxy_requests_total") == {
        req_key("none", 403): n,
        req_key("none", 404, endpoint="other"): n,
        req_key("none", 404, endpoint="models"): n,
    }
    assert delta(before, after, "aiproxy_refusals_total") == {
        (("reason", "model_not_allowed"),): n,
        (("reason", "unknown_url"),): n,
        (("reason", "model_not_found"),): n,
    }


@pytest.mark.expect_log(r"AIP01310", r"AIP01601")
def test_full_table_counts_under_other(make_gateway):
    """More distinct (route, endpoint, model, status) series than the table
    holds (512): every request is still counted, the series stay bounded,
    and the overflow shows as model="other"."""
    g = make_gateway().start()
    email = new_email("many")
    routes = [("/openai/v1", "chat/completions", "gpt-4o-mini"),
              ("/openai/v1", "embeddings", "text-embedding-3-small"),
              ("/proxy/openai/v1", "chat/completions", "gpt-4o-mini"),
              ("/proxy/openai/v1", "embeddings", "text-embedding-3-small"),
              ("/v1", "chat/completions", "gpt-4o-mini"),
              ("/v1", "embeddings", "text-embedding-3-small")]
    # Upstream errors the gateway passes on as they are (not retried).
    statuses = [s for s in range(400, 500) if s not in (401, 407, 408, 429)]
    jobs = [(p, e, m, s) for p, e, m in routes for s in statuses]
    assert len(jobs) > 512

    def send(job):
        prefix, endpoint, model, status = job
        body = ({"model": model, "messages": MSG} if endpoint.startswith("chat")
                else {"model": model, "input": "x"})
        with httpx.Client(timeout=30) as h:
            h.post(g.url("%s/%s" % (prefix, endpoint)), json=body,
                   headers=dict(auth(email), **{"X-Fake-Status": str(status)}))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, jobs))
    s = scrape(g)
    series = s.series("aiproxy_requests_total")
    assert sum(series.values()) == len(jobs)
    assert len(series) <= 512 + 1
    models = {dict(k)["model"] for k in series}
    assert "other" in models
    # Errors charged nothing carry no model: varying it fills nothing.
    assert models <= {"none", "other"}
    assert set(s.series("aiproxy_cost_dollars_total")) == set(series)


def test_label_values_escaped(make_gateway):
    """A label value with a quote and a backslash (here a <Location> path)
    is written escaped, and the format's parser reads it back whole."""
    g = make_gateway(r'''
<Location "/q\"x\y">
    AIProxyRoute openai
    AIProxyEndpoints chat/completions
    AIProxyModels gpt-4o-mini
</Location>
''').start()
    r = httpx.post(g.url("/q%22x%5Cy/chat/completions"), headers=auth(new_email("esc")),
                   json={"model": "gpt-4o-mini", "messages": MSG}, timeout=10)
    assert r.status_code == 200, r.text
    s = scrape(g)
    assert 'route="/q\\"x\\\\y"' in s.text
    assert s.series("aiproxy_requests_total") == {
        req_key("gpt-4o-mini", 200, route='/q"x\\y'): 1}


# ------------------------------------------------------------ store down

@pytest.mark.expect_log(r"AIP01001", r"AIP01101", r"AIP01106", r"AIP01104")
def test_store_down_shows(upstream):
    s = Store()
    if not s.local:
        pytest.skip("needs the local store to stop it (MONGODB_URI is set)")
    s.start()
    try:
        with Gateway(s, upstream, extra_conf=EXTRA) as g:
            c = client(g, new_email("down"))
            c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            before = scrape(g, "/metrics-public", headers={})
            assert before.get("aiproxy_store_up") == 1
            s.stop()
            with pytest.raises(openai.InternalServerError) as e:
                c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            assert e.value.status_code == 503
            # From the shared probe, at most 2 s old.
            deadline = time.time() + 5
            while True:
                after = scrape(g, "/metrics-public", headers={})
                if after.get("aiproxy_store_up") == 0 or time.time() > deadline:
                    break
                time.sleep(0.2)
            assert after.get("aiproxy_store_up") == 0
            assert delta(before, after, "aiproxy_refusals_total") == {
                (("reason", "store_unavailable"),): 1}
            assert delta(before, after, "aiproxy_requests_total") == {
                req_key("none", 503): 1}
            # Its failed round trips were timed too.
            assert (after.get("aiproxy_store_latency_seconds_count")
                    > before.get("aiproxy_store_latency_seconds_count"))
    finally:
        s.stop()


# ------------------------------------------------------------ leases

def test_leases_and_their_flusher_show(make_gateway):
    """On a lease: requests admitted with no round trip are counted as
    leased, the flusher's writes as lease writes and timed as store round
    trips; the cost series still equals what the store ends up charging."""
    g = make_gateway("AIProxyLeaseSize 0.50\nAIProxyLeaseFlush 100\n"
                     "AIProxyHostId metrics-a\n").start()
    email = new_email("leased")
    before = scrape(g)
    costs = []
    for _ in range(4):
        r = httpx.post(g.url(CHAT), headers=auth(email), timeout=10,
                       json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": MSG})
        assert r.status_code == 200, r.text
        costs.append(Decimal(r.headers["cost"]))
    # The flusher writes the spending within its period (100 ms).
    deadline = time.time() + 10
    while True:
        doc = g.store.client()[g.db_name].months.find_one({"email": email})
        if doc and Decimal(doc["spent"]) / PICO == sum(costs):
            break
        assert time.time() < deadline, doc
        time.sleep(0.05)
    after = scrape(g)
    assert after.get("aiproxy_leased_total") - before.get("aiproxy_leased_total") == 4
    assert (after.get("aiproxy_lease_writes_total")
            - before.get("aiproxy_lease_writes_total")) >= 1
    labels = cost_labels("gpt-4o-mini")
    assert exact_cost(after.text, labels) - exact_cost(before.text, labels) == sum(costs)
    # The lease's take and each of the flusher's writes were round trips.
    writes = (after.get("aiproxy_lease_writes_total")
              - before.get("aiproxy_lease_writes_total"))
    check_histogram(before, after, "aiproxy_store_latency_seconds",
                    at_least=writes + 1)


def test_upstream_latency_is_time_to_headers(mgw):
    """A provider slow to answer lands in the bucket of its delay; a stream
    quick to start and slow to finish is timed to its headers only."""
    c = client(mgw, new_email("slow"))
    name = "aiproxy_upstream_latency_seconds_bucket"
    before = scrape(mgw)
    c.chat.completions.create(model="gpt-4o-mini", messages=MSG,
                              extra_headers={"X-Fake-Delay-Ms": "600"})
    mid = scrape(mgw)
    assert mid.get(name, le="0.5") == before.get(name, le="0.5")
    assert mid.get(name, le="1") - before.get(name, le="1") == 1
    t0 = time.monotonic()
    chunks = list(c.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True,
        extra_headers={"X-Fake-Chunk-Delay-Ms": "200"}))
    assert time.monotonic() - t0 > 0.6 and len(chunks) >= 4
    after = scrape(mgw)
    assert after.get(name, le="0.5") - mid.get(name, le="0.5") == 1
    assert (after.get("aiproxy_upstream_latency_seconds_count")
            - before.get("aiproxy_upstream_latency_seconds_count")) == 2
