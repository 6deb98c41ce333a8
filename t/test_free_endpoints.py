"""The free endpoints: Anthropic's messages/count_tokens and OpenAI's
moderations. Authenticated, allow-listed per location, body-limited, model
allow-listed and rate limited like any other; nothing reserved, charged $0,
counted with a record. The attacks first: none of them may reach paid work
for free."""
import json
import secrets
import threading
import time

import anthropic
import openai
import pytest
from bson import Int64

from conftest import ANTHROPIC_KEY, PROVIDER_KEY, PRICES, Gateway, curl, make_token

COUNT = "/anthropic/v1/messages/count_tokens"
MODERATE = "/openai/v1/moderations"
MSGS = [{"role": "user", "content": "count these five words"}]
HAIKU = "claude-haiku-4-5"


def email(tag):
    return "free-%s-%s@example.com" % (tag, secrets.token_hex(4))


def count_body(**kw):
    body = {"model": HAIKU, "messages": MSGS}
    body.update(kw)
    return body


def upstream_paths(up):
    return [(r["method"], r["path"], r["query"]) for r in up.requests()]


def err_of(status, body, expected):
    assert status == expected, body
    err = json.loads(body)["error"]
    assert err["message"] and err["type"] and err["code"], err
    return err


def month(gateway, who):
    return gateway.db().months.find_one({"email": who}) or {}


# ---------------------------------------------------------------- attacks

@pytest.mark.parametrize("path", [
    "/anthropic/v1/messages/count_tokens/../",
    "/anthropic/v1/messages/count_tokens/..",
    "/anthropic/v1/messages/count_tokens/%2e%2e/",
    "/anthropic/v1/messages/count_tokens/%2E%2E",
    "/anthropic/v1/messages/count_tokens/./../",
])
def test_dot_segments_out_of_count_tokens_are_paid_messages(gateway, up, path):
    """httpd resolves the dot segments before the gateway sees the path: what
    reaches the provider's messages endpoint is a metered messages request,
    charged its price, never a free one."""
    who = email("dots")
    status, hdrs, body = curl(gateway, path, token=make_token(who),
                              body=count_body(max_tokens=50), args=["--path-as-is"])
    sent = upstream_paths(up)
    if status == 200:
        assert sent == [("POST", "/v1/messages", "")], sent
        assert json.loads(body)["type"] == "message"
        assert float(hdrs["cost"]) > 0, hdrs
        assert month(gateway, who)["spent"] > 0
    else:
        # Refused: then nothing reached the provider.
        err_of(status, body, status)
        assert sent == [], sent


@pytest.mark.parametrize("path", [
    "/anthropic/v1/messages%2fcount_tokens",
    "/anthropic/v1/messages%2Fcount_tokens",
    "/anthropic/v1/messages/count_tokens/extra",
    "/anthropic/v1/messages/count_tokens;messages",
    "/anthropic/v1/messages/count_tokens%00",
    "/anthropic/v1/messages/count_tokens%20",
    "/anthropic/v1/messages/batches",
    "/anthropic/v1/count_tokens",
    "/proxy/openai/v1/messages/count_tokens",
    "/proxy/anthropic/v1/moderations",
    "/anthropic/v1/moderations",
    "/openai/v1/messages/count_tokens",
    "/openai/v1/moderations/extra",
])
def test_paths_that_are_not_the_free_endpoints_are_refused(gateway, up, path):
    status, hdrs, body = curl(gateway, path, token=make_token(email("paths")),
                              body=count_body(max_tokens=50), args=["--path-as-is"])
    assert status in (400, 404), (status, body)
    assert upstream_paths(up) == []


@pytest.mark.parametrize("query", [
    "?x=/../../messages", "?beta=true", "?/../messages", "?stream=true",
])
def test_query_strings_never_go_upstream(gateway, up, query):
    """The provider sees /v1/messages/count_tokens with no query, whatever the
    client appended: a query string cannot steer it elsewhere."""
    who = email("query")
    status, hdrs, body = curl(gateway, COUNT + query, token=make_token(who),
                              body=count_body(), args=["--path-as-is"])
    assert status == 200, body
    assert json.loads(body) == {"input_tokens": 4}
    assert upstream_paths(up) == [("POST", "/v1/messages/count_tokens", "")]
    assert hdrs["cost"] == "0"


def test_messages_with_a_query_naming_count_tokens_is_paid(gateway, up):
    who = email("msgq")
    status, hdrs, body = curl(gateway, "/anthropic/v1/messages?count_tokens",
                              token=make_token(who), body=count_body(max_tokens=50))
    assert status == 200, body
    assert upstream_paths(up) == [("POST", "/v1/messages", "")]
    assert float(hdrs["cost"]) > 0


@pytest.mark.parametrize("path,body", [
    (COUNT, count_body(stream=True)),
    (COUNT, count_body(stream=True, max_tokens=50)),
    (MODERATE, {"input": "hello", "stream": True}),
    ("/v1/messages/count_tokens", count_body(stream=True)),
])
def test_stream_is_refused(gateway, up, path, body):
    status, hdrs, raw = curl(gateway, path, token=make_token(email("stream")), body=body)
    err = err_of(status, raw, 400)
    assert err["code"] == "stream_not_supported"
    assert upstream_paths(up) == []


def test_a_generation_body_on_count_tokens_only_counts(gateway, up):
    """A messages body with max_tokens and tools goes to count_tokens as sent:
    the provider counts it and generates nothing; the fake bills nothing."""
    who = email("genbody")
    body = count_body(max_tokens=4096, tools=[{"name": "f", "input_schema": {"type": "object"}}],
                      system="be brief")
    status, hdrs, raw = curl(gateway, COUNT, token=make_token(who), body=body)
    assert status == 200, raw
    assert json.loads(raw) == {"input_tokens": 6}
    recs = up.requests()
    assert [r["path"] for r in recs] == ["/v1/messages/count_tokens"]
    assert json.loads(recs[0]["body"]) == body
    billed = up._call("GET", "/__billed")
    assert [(b["path"], b["input"], b["output"]) for b in billed] == \
        [("/v1/messages/count_tokens", 0, 0)]
    assert hdrs["cost"] == "0"


def test_the_free_model_is_refused_on_paid_endpoints(gateway, up):
    """omni-moderation-latest is priced at nothing: on chat it would be a way
    to work for free, whatever the provider would make of it."""
    for path, body in (("/openai/v1/chat/completions",
                        {"model": "omni-moderation-latest", "messages": MSGS}),
                       ("/openai/v1/embeddings",
                        {"model": "omni-moderation-latest", "input": "x"}),
                       ("/v1/chat/completions",
                        {"model": "omni-moderation-latest", "messages": MSGS})):
        status, hdrs, raw = curl(gateway, path, token=make_token(email("freemodel")),
                                 body=body)
        err = err_of(status, raw, 403)
        assert err["code"] == "model_not_allowed"
    assert upstream_paths(up) == []


def test_a_model_of_the_other_api_is_refused_by_model(gateway, up):
    """The by-model route serves count_tokens from Anthropic providers only:
    an OpenAI model has none."""
    who = email("bymodel")
    status, hdrs, raw = curl(gateway, "/v1/messages/count_tokens", token=make_token(who),
                             body=count_body(model="gpt-4o-mini"))
    err_of(status, raw, 403)
    assert upstream_paths(up) == []
    # Refused after its body was read: nothing counted, no record (and none
    # without an id left for the writer).
    assert gateway.db().requests.count_documents({"email": who}) == 0
    assert gateway.db().requests.count_documents({"_id": None}) == 0
    assert month(gateway, who).get("requests", 0) == 0


def test_get_is_not_allowed(gateway, up):
    status, hdrs, raw = curl(gateway, COUNT, token=make_token(email("get")))
    err_of(status, raw, 405)
    status, hdrs, raw = curl(gateway, MODERATE, token=make_token(email("get")))
    err_of(status, raw, 405)
    assert upstream_paths(up) == []


# ---------------------------------------------------------------- the clients

def claude(gateway, token):
    return anthropic.Anthropic(base_url=gateway.url("/anthropic"), api_key=token,
                               max_retries=0, timeout=20)


def oai(gateway, token):
    return openai.OpenAI(base_url=gateway.openai_base, api_key=token, max_retries=0,
                         timeout=20)


def test_count_tokens_with_the_anthropic_sdk(gateway, up):
    who = email("sdk")
    raw = claude(gateway, make_token(who)).messages.with_raw_response.count_tokens(
        model=HAIKU, system="be brief", messages=MSGS)
    assert raw.parse().input_tokens == 6
    assert raw.headers["cost"] == "0"
    assert raw.headers["monthlyCost"] == "0"
    assert raw.headers["monthlyRequests"] == "1"
    rec = up.requests()[-1]
    assert rec["path"] == "/v1/messages/count_tokens"
    # Forwarded with the server's key, never the student's token.
    assert rec["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in rec["headers"]
    # Counted with a record at $0, visible in usage.
    m = month(gateway, who)
    assert m["spent"] == 0 and m["requests"] == 1 and m["reserved"] == 0
    docs = list(gateway.db().requests.find({"email": who}))
    assert [(d["endpoint"], d["model"], d["cost"], d["status"]) for d in docs] == \
        [("messages/count_tokens", HAIKU, 0, 200)]


def test_moderations_with_the_openai_sdk(gateway, up):
    who = email("mod")
    raw = oai(gateway, make_token(who)).moderations.with_raw_response.create(
        input=["I will kill the process", "hello there"])
    mod = raw.parse()
    assert mod.model == "omni-moderation-latest"
    assert [r.flagged for r in mod.results] == [True, False]
    assert mod.results[0].categories.violence is True
    assert raw.headers["cost"] == "0"
    assert raw.headers["monthlyRequests"] == "1"
    rec = up.requests()[-1]
    assert rec["path"] == "/v1/moderations"
    assert rec["headers"]["authorization"] == "Bearer " + PROVIDER_KEY
    # The default model is named in what is forwarded: what was allowed is
    # what serves.
    assert json.loads(rec["body"])["model"] == "omni-moderation-latest"
    docs = list(gateway.db().requests.find({"email": who}))
    assert [(d["endpoint"], d["model"], d["cost"]) for d in docs] == \
        [("moderations", "omni-moderation-latest", 0)]


def test_moderation_model_named_and_multimodal(gateway, up):
    mod = oai(gateway, make_token(email("mm"))).moderations.create(
        model="omni-moderation-latest",
        input=[{"type": "text", "text": "a picture"},
               {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])
    assert len(mod.results) == 1
    assert mod.results[0].category_applied_input_types.violence == ["text", "image"]


def test_count_tokens_by_model(gateway, up):
    """One base URL: /v1/messages/count_tokens picks the provider by model."""
    c = anthropic.Anthropic(base_url=gateway.base, api_key=make_token(email("v1")),
                            max_retries=0, timeout=20)
    assert c.messages.count_tokens(model=HAIKU, messages=MSGS).input_tokens == 4
    assert upstream_paths(up) == [("POST", "/v1/messages/count_tokens", "")]


def test_nothing_is_held_while_in_flight(gateway, up):
    """No hold, no lease ticket: the month shows nothing reserved while the
    provider is still counting."""
    who = email("inflight")
    got = {}

    def run():
        got["r"] = curl(gateway, COUNT, token=make_token(who), body=count_body(),
                        headers=["X-Fake-Delay-Ms: 1500"])
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.7)
    during = gateway.store.client()[gateway.db_name].months.find_one({"email": who})
    t.join()
    assert got["r"][0] == 200
    assert during is None or (during.get("reserved", 0) == 0 and not during.get("holds"))


# ---------------------------------------------------------------- refusals

def test_over_cap_user_may_still_count_and_moderate(gateway, up):
    who = email("overcap")
    gateway.set_cap(who, 1)
    gateway.db().months.insert_one({"_id": "%s|%s" % (who, time.strftime("%Y-%m", time.gmtime())),
                                    "email": who, "month": time.strftime("%Y-%m", time.gmtime()),
                                    "spent": Int64(5), "reserved": Int64(0),
                                    "requests": Int64(1), "holds": {}})
    tok = make_token(who)
    # Paid work is refused...
    status, hdrs, raw = curl(gateway, "/anthropic/v1/messages", token=tok,
                             body=count_body(max_tokens=10))
    assert status == 429, raw
    # ...the free endpoints are not: they cost nothing.
    assert claude(gateway, tok).messages.count_tokens(model=HAIKU, messages=MSGS).input_tokens == 4
    assert oai(gateway, tok).moderations.create(input="hi").results[0].flagged is False
    m = month(gateway, who)
    assert m["spent"] == 5 and m["requests"] == 3


def test_revoked_token_is_refused(gateway, up):
    who = email("revoked")
    tok = make_token(who)
    gateway.db().users.update_one({"_id": who},
                                  {"$set": {"revoked_at": Int64(int(time.time()) + 5)}},
                                  upsert=True)
    with pytest.raises(anthropic.AuthenticationError):
        claude(gateway, tok).messages.count_tokens(model=HAIKU, messages=MSGS)
    with pytest.raises(openai.AuthenticationError):
        oai(gateway, tok).moderations.create(input="hi")
    status, hdrs, raw = curl(gateway, COUNT, body=count_body())
    err_of(status, raw, 401)
    assert upstream_paths(up) == []


def test_disallowed_model_is_403(gateway, up):
    tok = make_token(email("model"))
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(gateway, tok).messages.count_tokens(model="claude-opus-4-1", messages=MSGS)
    with pytest.raises(openai.PermissionDeniedError):
        oai(gateway, tok).moderations.create(model="text-moderation-stable", input="hi")
    status, hdrs, raw = curl(gateway, COUNT, token=tok, body={"messages": MSGS})
    err_of(status, raw, 400)
    assert upstream_paths(up) == []


STRICT = """
<Location /strict/anthropic/v1>
    AIProxyRoute anthropic
    AIProxyEndpoints messages
    AIProxyModels claude-haiku-4-5
</Location>
<Location /strict/openai/v1>
    AIProxyRoute openai
    AIProxyEndpoints chat/completions moderations
    AIProxyModels gpt-4o-mini
</Location>
AIProxyMaxBody 2048
AIProxyRateLimit 3 60
"""


@pytest.fixture(scope="module")
def strict(store, upstream):
    with Gateway(store, upstream, extra_conf=STRICT) as g:
        yield g


def test_not_allow_listed_is_404(strict, up):
    status, hdrs, raw = curl(strict, "/strict/anthropic/v1/messages/count_tokens",
                             token=make_token(email("notlisted")), body=count_body())
    err = err_of(status, raw, 404)
    assert err["code"] == "unknown_url"
    assert upstream_paths(up) == []


def test_default_moderation_model_must_be_allowed(strict, up):
    """Moderations without a model use omni-moderation-latest, allowed like
    any named model: here the location lists only gpt-4o-mini."""
    status, hdrs, raw = curl(strict, "/strict/openai/v1/moderations",
                             token=make_token(email("defmodel")), body={"input": "hi"})
    err = err_of(status, raw, 403)
    assert "omni-moderation-latest" in err["message"]
    assert upstream_paths(up) == []


def test_body_too_large_is_413(strict, up):
    body = count_body(messages=[{"role": "user", "content": "w " * 2000}])
    status, hdrs, raw = curl(strict, "/anthropic/v1/messages/count_tokens",
                             token=make_token(email("big")), body=body)
    err = err_of(status, raw, 413)
    assert err["code"] == "request_too_large"
    assert upstream_paths(up) == []


def test_rate_limit_applies(strict, up):
    tok = make_token(email("rate"))
    got = [curl(strict, COUNT, token=tok, body=count_body())[0] for _ in range(3)]
    assert got == [200, 200, 200]
    status, hdrs, raw = curl(strict, COUNT, token=tok, body=count_body())
    err = err_of(status, raw, 429)
    assert err["code"] == "rate_limit_exceeded" and "retry-after" in hdrs
    status, hdrs, raw = curl(strict, MODERATE, token=tok, body={"input": "hi"})
    err_of(status, raw, 429)
    assert len(up.requests()) == 3


def test_free_model_price_is_zero():
    """The shipped price list names the moderation model, at nothing."""
    p = PRICES["omni-moderation-latest"]
    assert p["input"] == 0 and p["output"] == 0


def test_a_failed_count_is_recorded_not_counted(gateway, up):
    """The provider's error passes through at $0: in the records with its
    status, not in the month's requests."""
    who = email("failed")
    status, hdrs, raw = curl(gateway, COUNT, token=make_token(who), body=count_body(),
                             headers=["X-Fake-Status: 400"])
    assert status == 400, raw
    assert json.loads(raw)["type"] == "error"      # Anthropic's own shape
    assert hdrs["cost"] == "0" and hdrs["monthlyrequests"] == "0"
    docs = list(gateway.db().requests.find({"email": who}))
    assert [(d["endpoint"], d["cost"], d["status"]) for d in docs] == \
        [("messages/count_tokens", 0, 400)]
    assert month(gateway, who).get("requests", 0) == 0


LEASE = "AIProxyLeaseSize 0.50\nAIProxyLeaseFlush 100\nAIProxyHostId test-free\n"


def test_on_a_lease_counted_by_the_host(make_gateway, up):
    """A user on a lease: the free request takes no ticket, is counted on the
    lease and written with its next write, its record by the writer."""
    gw = make_gateway(LEASE).start()
    who = email("lease")
    tok = make_token(who)
    status, hdrs, raw = curl(gw, "/anthropic/v1/messages", token=tok,
                             body=count_body(max_tokens=10))
    assert status == 200, raw
    raw = claude(gw, tok).messages.with_raw_response.count_tokens(model=HAIKU, messages=MSGS)
    assert raw.headers["cost"] == "0" and raw.headers["monthlyRequests"] == "2"
    deadline = time.time() + 10
    while True:
        m = gw.store.client()[gw.db_name].months.find_one({"email": who}) or {}
        if m.get("requests") == 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert m["requests"] == 2
    docs = list(gw.db().requests.find({"email": who}))
    assert sorted((d["endpoint"], d["cost"] == 0) for d in docs) == \
        [("messages", False), ("messages/count_tokens", True)]


def test_a_spent_course_may_still_moderate_and_count(make_gateway, up):
    """A course's members, once the course budget is spent (and a child knows
    it), are refused paid work but not the free endpoints; they count on the
    course at $0."""
    from test_courses import course_month, enrol, new_course, student
    gw = make_gateway("AIProxyUserCacheTTL 60\n").start()
    db = gw.store.client()[gw.db_name]
    cid = new_course(db, 1)
    ym = time.strftime("%Y-%m", time.gmtime())
    db.months.insert_one({"_id": "#%s|%s" % (cid, ym), "email": "#" + cid, "month": ym,
                          "spent": Int64(5), "reserved": Int64(0), "requests": Int64(1),
                          "holds": {}})
    who = student("free")
    enrol(db, cid, who)
    tok = make_token(who, course=cid)
    chat = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": MSGS}
    for _ in range(4):  # every child learns the course is spent
        status, hdrs, raw = curl(gw, "/openai/v1/chat/completions", token=tok, body=chat)
        assert status == 429 and json.loads(raw)["error"]["code"] == "course_budget_exceeded"
    assert oai(gw, tok).moderations.create(input="hi").results[0].flagged is False
    assert claude(gw, tok).messages.count_tokens(model=HAIKU, messages=MSGS).input_tokens == 4
    assert [p for _, p, _ in upstream_paths(up)] == ["/v1/moderations",
                                                     "/v1/messages/count_tokens"]
    gw.wait_records()
    c = course_month(db, cid)
    assert c["spent"] == 5 and c["requests"] == 3


FREE_LIMITED = """
AIProxyFreeRateLimit 2 60
"""


def test_free_endpoints_have_a_window_of_their_own(store, upstream, up):
    """Free to the student, a count_tokens or moderation call still costs a
    record and the provider's quota: AIProxyFreeRateLimit bounds them per
    user (on by default), paid requests untouched; a cap of 0 opens
    nothing, free or not."""
    with Gateway(store, upstream, extra_conf=FREE_LIMITED) as g:
        who = email("freelimit")
        tok = make_token(who)
        for _ in range(2):
            status, hdrs, raw = curl(g, COUNT, token=tok, body=count_body())
            assert status == 200, raw
        status, hdrs, raw = curl(g, COUNT, token=tok, body=count_body())
        err = err_of(status, raw, 429)
        assert err["code"] == "rate_limit_exceeded" and "free endpoints" in err["message"]
        assert g.db().requests.count_documents({"email": who}) == 2
        oai(g, tok).chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "hi"}])
        zero = email("capzero")
        g.set_cap(zero, 0)
        status, hdrs, raw = curl(g, COUNT, token=make_token(zero), body=count_body())
        assert err_of(status, raw, 429)["code"] == "insufficient_quota"
        assert g.db().requests.count_documents({"email": zero}) == 0
