"""Money holds against a student who tries: every request's cost is bounded
before it goes out, and charged in full after.

The fake upstream bills what a real provider would (GET /__billed: it
honours max_* and n, queues background work, bills a hung request, and
stops billing a stream where its connection broke). Each test asserts the
gateway charged at least that, and that spend stays within the cap."""
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from conftest import PRICES, make_token, usd
from helpers import new_email

CHAT = "/openai/v1/chat/completions"
MSG = [{"role": "user", "content": "tell me a long story"}]


def oai(gw, email, base="/openai/v1"):
    return openai.OpenAI(base_url=gw.url(base), api_key=make_token(email), max_retries=0)


def claude(gw, email, base="/anthropic"):
    return anthropic.Anthropic(base_url=gw.url(base), api_key=make_token(email),
                               max_retries=0)


def billed(up):
    return up._call("GET", "/__billed")


def billed_cost(rec):
    p = PRICES[rec["model"]]
    return (rec["input"] * p["input"] + rec["cached"] * p["cached"]
            + rec["cache_write"] * p["cache_write"]
            + rec.get("cache_write_1h", 0) * p.get("cache_write_1h", 0)
            + rec["output"] * p["output"])


def month(gw, email):
    return gw.db().months.find_one({"email": email}) or {"spent": 0, "requests": 0,
                                                          "reserved": 0, "holds": {}}


def records(gw, email, n=1, timeout=10):
    deadline = time.time() + timeout
    while True:
        docs = list(gw.db().requests.find({"email": email}).sort("time", 1))
        if len(docs) >= n or time.time() > deadline:
            return docs
        time.sleep(0.05)


def assert_refused(exc, status, code, *words):
    assert exc.value.status_code == status, exc.value
    err = exc.value.body
    err = err.get("error", err) if isinstance(err, dict) else {}
    assert err.get("code") == code, exc.value.body
    for w in words:
        assert w in err["message"], err["message"]


# ------------------------------------------------------------------ 1. routes

def test_proxy_and_v1_never_widen_what_openai_v1_allows(gateway, up):
    """The shipped /proxy and /v1 routes refuse what /openai/v1 refuses."""
    email = new_email("widen")
    for base in ("/openai/v1", "/proxy/openai/v1", "/v1"):
        for model in ("gpt-4o", "o3"):
            with pytest.raises(openai.PermissionDeniedError) as e:
                oai(gateway, email, base).chat.completions.create(model=model, messages=MSG)
            assert_refused(e, 403, "model_not_allowed", model)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(gateway, email, "/proxy/anthropic").messages.create(
            model="claude-opus-4-1", max_tokens=10, messages=MSG)
    assert billed(up) == []
    # What /openai/v1 allows, /proxy serves.
    r = oai(gateway, email, "/proxy/openai/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MSG)
    assert r.choices[0].message.content


@pytest.mark.expect_log(r"AH01110")
def test_failover_provider_is_not_reachable_by_name(make_gateway, up):
    backup = up.base + "/backup/v1"
    gw = make_gateway('AIProxyProvider backup "%s" api=openai key=env:OPENAI_API_KEY\n'
                      'AIProxyModel gpt-4o openai backup\n' % backup).start()
    email = new_email("byname")
    with pytest.raises(openai.NotFoundError) as e:
        oai(gw, email, "/proxy/backup/v1").chat.completions.create(
            model="gpt-4o-mini", messages=MSG)
    assert_refused(e, 404, "unknown_provider", "backup")
    assert billed(up) == []


# ------------------------------------------------------------------ 2. background

def test_background_response_is_refused_not_free(gateway, up):
    email = new_email("bg")
    with pytest.raises(openai.BadRequestError) as e:
        oai(gateway, email).responses.create(model="gpt-4o-mini", input="work hard",
                                             background=True)
    assert_refused(e, 400, "unsupported_feature", "Background")
    assert billed(up) == []
    assert month(gateway, email)["spent"] == 0


# ------------------------------------------------------------------ 3. cut streams

def test_client_gone_before_message_delta_is_charged_the_final_usage(gateway, up):
    """A client that reads most of a stream and goes before message_delta:
    the gateway reads the stream to its end, so the charge is the
    provider's own final count, hidden thinking included."""
    email = new_email("gone-claude")
    read = 0
    with claude(gateway, email).messages.stream(
            model="claude-haiku-4-5", max_tokens=2000, messages=MSG,
            extra_headers={"X-Fake-Want": "400", "X-Fake-Chunk-Delay-Ms": "5"}) as s:
        for _ in s.text_stream:
            read += 1
            if read == 300:
                break          # most of it read; the client goes
    doc = records(gateway, email)[0]
    bill = billed(up)[-1]
    assert not bill.get("cut") and bill["output"] == 400
    # message_start's output_tokens (1) was no final count.
    assert doc["estimated"] is False and doc["output_tokens"] == 400
    assert doc["cost"] == billed_cost(bill)
    assert month(gateway, email)["spent"] == doc["cost"]


@pytest.mark.expect_log(r"AH01110")
def test_provider_cut_before_message_delta_is_estimated_from_the_deltas(gateway, up):
    email = new_email("cut-claude")
    with pytest.raises(Exception):
        with claude(gateway, email).messages.stream(
                model="claude-haiku-4-5", max_tokens=2000, messages=MSG,
                extra_headers={"X-Fake-Want": "400", "X-Fake-Cut-After": "300"}) as s:
            for _ in s.text_stream:
                pass
    doc = records(gateway, email)[0]
    bill = billed(up)[-1]
    assert bill.get("cut") and bill["output"] > 250
    assert doc["estimated"] is True
    assert doc["input_tokens"] == bill["input"]      # from message_start
    assert doc["output_tokens"] >= bill["output"]
    assert billed_cost(bill) <= doc["cost"] <= doc["reserved"]


@pytest.mark.expect_log(r"AH01110")
def test_cut_stream_counts_reasoning_and_tool_argument_deltas(gateway, up):
    email = new_email("cut-kinds")
    client = oai(gateway, email)
    # Responses: reasoning summary deltas, then the provider breaks off.
    with pytest.raises(Exception):
        for _ in client.responses.create(model="gpt-4o-mini", input="think", stream=True,
                                         extra_headers={"X-Fake-Reasoning": "300",
                                                        "X-Fake-Cut-After": "250"}):
            pass
    # Chat: a tool call whose arguments stream, cut the same way.
    with pytest.raises(Exception):
        for _ in client.chat.completions.create(
                model="gpt-4o-mini", messages=MSG, stream=True,
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                extra_headers={"X-Fake-Tool-Call": "f", "X-Fake-Want": "400",
                               "X-Fake-Cut-After": "300"}):
            pass
    docs = records(gateway, email, n=2)
    bills = billed(up)[-2:]
    for doc, bill in zip(docs, bills):
        assert bill.get("cut") and bill["output"] > 200, bill
        assert doc["estimated"] is True
        assert doc["output_tokens"] >= bill["output"], (doc, bill)
        assert doc["cost"] >= billed_cost(bill)


# ------------------------------------------------------------------ 4. the reservation is a ceiling

def run_parallel(n, fn):
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def outcome(call):
    try:
        call()
        return 200
    except openai.APIStatusError as e:
        return e.status_code


def test_n_multiplies_the_reservation_at_the_cap_edge(gateway, up):
    """64 parallel n=8 requests, each choice running to max_tokens: what the
    provider bills stays within the cap."""
    email = new_email("n-edge")
    cap = 20 * 10**9                          # $0.02
    gateway.set_cap(email, cap)
    client = oai(gateway, email)

    def one(_):
        return outcome(lambda: client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, n=8, max_tokens=1000,
            extra_headers={"X-Fake-Want": "5000"}))
    statuses = run_parallel(64, one)
    ok = statuses.count(200)
    assert ok >= 1 and set(statuses) <= {200, 429}, statuses
    bills = [b for b in billed(up) if b["status"] == 200]
    assert len(bills) == ok
    assert all(b["output"] == 8000 for b in bills)
    provider_cost = sum(billed_cost(b) for b in bills)
    m = month(gateway, email)
    assert provider_cost <= cap and m["spent"] <= cap
    assert m["spent"] >= provider_cost
    assert m["reserved"] == 0


def test_no_limit_gets_the_models_maximum_written_and_reserved(gateway, up):
    """Without max_*, models produce up to their maximum: that is reserved and
    written into the forwarded body, so 64 parallel requests stay in the cap."""
    email = new_email("nolimit")
    cap = 50 * 10**9                          # $0.05
    gateway.set_cap(email, cap)
    client = oai(gateway, email)
    most = PRICES["gpt-4o-mini"]["max_output"]

    def one(_):
        return outcome(lambda: client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG,
            extra_headers={"X-Fake-Want": str(10 * most)}))
    statuses = run_parallel(64, one)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 429}, statuses
    bills = [b for b in billed(up) if b["status"] == 200]
    assert all(b["output"] == most for b in bills)
    sent = [json.loads(r["body"]) for r in up.requests()]
    assert sent and all(b["max_completion_tokens"] == most for b in sent)
    m = month(gateway, email)
    assert sum(billed_cost(b) for b in bills) <= m["spent"] <= cap


def test_client_limit_above_the_models_maximum_is_lowered(gateway, up):
    email = new_email("lower")
    most = PRICES["gpt-4o-mini"]["max_output"]
    raw = oai(gateway, email).responses.with_raw_response.create(
        model="gpt-4o-mini", input="hi", max_output_tokens=10 * most)
    assert json.loads(up.requests()[-1]["body"])["max_output_tokens"] == most
    p = PRICES["gpt-4o-mini"]
    doc = records(gateway, email)[0]
    assert doc["reserved"] == len(raw.http_request.content) * p["input"] + most * p["output"]


def test_images_reserve_their_ceiling_or_are_refused(make_gateway, up):
    gw = make_gateway("<Location /wide>\n    AIProxyRoute openai\n"
                      "    AIProxyModels *\n</Location>\n").start()
    email = new_email("img")
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "what is it"}, image, image]}]
    body_len = len(json.dumps({"model": "gpt-4o-mini", "messages": msgs, "max_tokens": 10},
                              separators=(",", ":")).encode())
    client = oai(gw, email, "/wide")
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=10)
    p = PRICES["gpt-4o-mini"]
    doc = records(gw, email)[0]
    assert doc["reserved"] == (body_len + 2 * p["image"]) * p["input"] + 10 * p["output"]
    # A tiny image URL costs thousands of tokens: under a small cap it is refused.
    gw.set_cap(email, doc["cost"] + p["image"] * p["input"])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=10)
    # A model whose price names no per-image ceiling refuses images.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="o3-mini", messages=msgs, max_tokens=10)
    assert_refused(e, 400, "images_not_allowed", "o3-mini")


def test_context_kept_at_the_provider_is_refused_or_reserved(make_gateway, up):
    gw = make_gateway("<Location /ctx/v1>\n    AIProxyRoute openai\n"
                      "    AIProxyModels gpt-4o-mini\n    AIProxyServerContext reserve\n"
                      "</Location>\n").start()
    email = new_email("ctx")
    with pytest.raises(openai.BadRequestError) as e:
        oai(gw, email).responses.create(model="gpt-4o-mini", input="and then?",
                                        previous_response_id="resp_abc")
    assert_refused(e, 400, "unbounded_input", "previous_response_id")
    assert billed(up) == []
    oai(gw, email, "/ctx/v1").responses.create(model="gpt-4o-mini", input="and then?",
                                               previous_response_id="resp_abc",
                                               max_output_tokens=100)
    p = PRICES["gpt-4o-mini"]
    doc = records(gw, email)[0]
    assert doc["reserved"] == p["context"] * p["input"] + 100 * p["output"]


# ------------------------------------------------------------------ 5. costs beyond tokens

@pytest.mark.parametrize("kind,kwargs,word", [
    ("chat", {"service_tier": "priority"}, "priority"),
    ("responses", {"tools": [{"type": "web_search"}]}, "web_search"),
    ("responses", {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
     "code_interpreter"),
    ("chat", {"web_search_options": {}}, "Web search"),
    ("chat", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
     "Audio"),
])
def test_openai_costs_beyond_tokens_are_refused(gateway, up, kind, kwargs, word):
    client = oai(gateway, new_email("extra"))
    with pytest.raises(openai.BadRequestError) as e:
        if kind == "chat":
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG, **kwargs)
        else:
            client.responses.create(model="gpt-4o-mini", input="x", **kwargs)
    assert_refused(e, 400, "unsupported_feature", word)
    assert billed(up) == []


@pytest.mark.parametrize("kwargs,word", [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
     "web_search_20250305"),
    ({"system": [{"type": "text", "text": "be brief",
                  "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}, "2h"),
])
def test_anthropic_costs_beyond_tokens_are_refused(gateway, up, kwargs, word):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude(gateway, new_email("aextra")).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MSG, **kwargs)
    assert e.value.status_code == 400 and word in e.value.body["error"]["message"]
    assert billed(up) == []


def test_anthropic_beta_passes_only_when_allowed(make_gateway, up):
    gw = make_gateway("AIProxyAnthropicBeta fine-grained-tool-streaming-2025-05-14\n").start()
    client = claude(gw, new_email("beta"))
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG,
                           extra_headers={"anthropic-beta": "context-1m-2025-08-07,"
                                          "fine-grained-tool-streaming-2025-05-14"})
    assert up.requests()[-1]["headers"]["anthropic-beta"] == \
        "fine-grained-tool-streaming-2025-05-14"
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG,
                           extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert "anthropic-beta" not in up.requests()[-1]["headers"]


# ------------------------------------------------------------------ 6. work done upstream

@pytest.mark.expect_log(r"AH01102", r"AH00898", r"AIP01310")
def test_sent_request_that_times_out_is_charged_its_reservation(make_gateway, up):
    slow = up.base + "/slow/v1"
    gw = make_gateway('AIProxyProvider slow "%s" api=openai key=env:OPENAI_API_KEY\n'
                      '<Proxy "%s">\n    ProxySet timeout=2\n</Proxy>\n'
                      'AIProxyProvider spare "%s" api=openai key=env:OPENAI_API_KEY\n'
                      'AIProxyModel gpt-4.1-nano slow spare\n'
                      % (slow, slow, up.base + "/spare/v1")).start()
    email = new_email("timeout")
    with pytest.raises(openai.APIStatusError) as e:
        oai(gw, email, "/v1").chat.completions.create(
            model="gpt-4.1-nano", messages=MSG, max_tokens=100,
            extra_headers={"X-Fake-Hang": "1"})
    assert_refused(e, 504, "upstream_timeout", "charged its reserved maximum")
    # Sent once: another attempt could be billed again.
    assert [r["path"] for r in up.requests()] == ["/slow/v1/chat/completions"]
    doc = records(gw, email)[0]
    assert doc["estimated"] is True and doc["cost"] == doc["reserved"] > 0
    assert doc["cost"] >= billed_cost(billed(up)[-1])
    assert month(gw, email)["spent"] == doc["cost"]


def pico(s):
    from decimal import Decimal
    return int(Decimal(s) * 10**12)


@pytest.mark.expect_log(r"AIP01202")
def test_usage_above_the_reservation_is_charged_the_reservation(gateway, up):
    """A provider reporting more than the bound allows: the cap still holds,
    and ops see why in the log."""
    email = new_email("over")
    raw = oai(gateway, email).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, max_tokens=10,
        extra_headers={"X-Fake-Usage": json.dumps({"prompt_tokens": 10**6,
                                                   "completion_tokens": 10})})
    doc = records(gateway, email)[0]
    assert doc["cost"] == doc["reserved"] == pico(raw.headers["cost"])
    assert "AIP01202" in gateway.error_log()


# ------------------------------------------------------------------ 7. streams by the request

def test_mislabelled_stream_is_read_as_a_stream(gateway, up):
    email = new_email("ctype")
    chunks = list(oai(gateway, email).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True,
        extra_headers={"X-Fake-Stream-Content-Type": "text/plain; charset=utf-8"}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    doc = records(gateway, email)[0]
    bill = billed(up)[-1]
    assert doc["estimated"] is False and doc["cost"] == billed_cost(bill) > 0


def test_usage_we_asked_for_is_hidden_on_a_chunk_with_choices(gateway, up):
    email = new_email("hide")
    chunks = list(oai(gateway, email).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True,
        extra_headers={"X-Fake-Usage-On-Choice": "1"}))
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    assert any(c.choices[0].finish_reason == "stop" for c in chunks)
    doc = records(gateway, email)[0]
    assert doc["estimated"] is False and doc["cost"] == billed_cost(billed(up)[-1])
    # A client that asks sees it.
    email = new_email("show")
    chunks = list(oai(gateway, email).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Fake-Usage-On-Choice": "1"}))
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [billed(up)[-1]["output"]]


# ------------------------------------------------------------------ found in review

def test_items_given_by_id_are_provider_kept_input(gateway, up):
    """An input item named by id alone (type left out or null) is filled by
    the provider from what it keeps: refused like previous_response_id."""
    client = oai(gateway, new_email("byid"))
    for item in ({"id": "msg_abc"}, {"type": None, "id": "msg_abc"},
                 {"type": "reasoning", "id": "rs_abc", "summary": []}):
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model="gpt-4o-mini",
                                    input=[item, {"role": "user", "content": "sum up"}])
        assert_refused(e, 400, "unbounded_input")
    assert billed(up) == []
    # Nothing is kept for later either.
    client.responses.create(model="gpt-4o-mini", input="hello", store=True)
    assert json.loads(up.requests()[-1]["body"])["store"] is False


def test_output_limit_of_another_endpoint_is_refused(gateway, up):
    client = oai(gateway, new_email("foreign"))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                       extra_body={"max_output_tokens": 1})
    assert_refused(e, 400, "invalid_request", "max_completion_tokens")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="x", extra_body={"max_tokens": 1})
    assert billed(up) == []


@pytest.mark.expect_log(r"AH01110")
def test_cut_stream_that_asked_for_reasoning_pays_its_output_bound(gateway, up):
    """Reasoning a stream does not show cannot be estimated from its deltas."""
    email = new_email("cut-reason")
    with pytest.raises(Exception):
        for _ in oai(gateway, email).responses.create(
                model="gpt-4o-mini", input="think", stream=True, max_output_tokens=500,
                reasoning={"effort": "high"},
                extra_headers={"X-Fake-Want": "400", "X-Fake-Cut-After": "20"}):
            pass
    doc = records(gateway, email)[0]
    assert doc["estimated"] is True and doc["output_tokens"] == 500
    assert doc["cost"] == doc["reserved"]


def test_query_string_does_not_go_upstream(gateway, up):
    r = httpx.post(gateway.url(CHAT + "?api-version=2099-01-01&models=x"),
                   headers={"Authorization": "Bearer " + make_token(new_email("qs"))},
                   json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert up.requests()[-1]["query"] == ""


HOUR_SYSTEM = [{"type": "text", "text": "a long syllabus " * 400,
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def test_one_hour_cache_writes_are_priced_as_such(gateway, up):
    """1-hour cache writes cost twice the input, not the 5-minute rate."""
    email = new_email("hour")
    usage = json.dumps({"input_tokens": 20, "cache_creation": 100,
                        "cache_creation_1h": 1000, "output_tokens": 10})
    raw = claude(gateway, email).messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=50, system=HOUR_SYSTEM, messages=MSG,
        extra_headers={"X-Fake-Usage": usage})
    bill = billed(up)[-1]
    assert bill["cache_write_1h"] == 1000 and bill["cache_write"] == 100
    doc = records(gateway, email)[0]
    p = PRICES["claude-haiku-4-5"]
    assert p["cache_write_1h"] == 2 * p["input"]
    assert doc["cost"] == billed_cost(bill) == pico(raw.headers["cost"])
    assert doc["cache_write_1h_tokens"] == 1000 and doc["estimated"] is False
    # The hold took the hour's rate for every input byte.
    assert doc["reserved"] == (len(raw.http_request.content) * p["cache_write_1h"]
                               + 50 * p["output"])


def test_one_hour_cache_writes_refused_where_unpriced(make_gateway, up):
    gw = make_gateway("AIProxyPrice claude-nohour input=1.00 cache_write=1.25 output=5.00 "
                      "max_output=1000\n<Location /nohour/v1>\n    AIProxyRoute anthropic\n"
                      "    AIProxyModels claude-nohour\n</Location>\n").start()
    with pytest.raises(anthropic.BadRequestError) as e:
        claude(gw, new_email("nohour"), "/nohour").messages.create(
            model="claude-nohour", max_tokens=50, system=HOUR_SYSTEM, messages=MSG)
    assert e.value.status_code == 400
    assert "cache_write_1h" in e.value.body["error"]["message"]
    assert billed(up) == []


def test_streamed_one_hour_cache_writes_are_charged_once(gateway, up):
    """message_delta carries running totals but no split by duration: the
    hour's writes named at message_start stay the hour's."""
    email = new_email("hour-stream")
    usage = json.dumps({"input_tokens": 20, "cache_creation": 100,
                        "cache_creation_1h": 1000, "output_tokens": 10})
    with claude(gateway, email).messages.stream(
            model="claude-haiku-4-5", max_tokens=50, system=HOUR_SYSTEM, messages=MSG,
            extra_headers={"X-Fake-Usage": usage}) as s:
        s.get_final_message()
    doc = records(gateway, email)[0]
    bill = billed(up)[-1]
    assert doc["estimated"] is False
    assert (doc["cache_write_tokens"], doc["cache_write_1h_tokens"]) == (100, 1000)
    assert doc["cost"] == billed_cost(bill)


def test_stream_request_answered_in_json_is_read_as_json(gateway, up):
    """An upstream that ignores stream answers JSON: the client gets valid
    JSON and the charge is the answer's usage."""
    email = new_email("json-stream")
    r = httpx.post(gateway.url("/openai/v1/embeddings"),
                   headers={"Authorization": "Bearer " + make_token(email)},
                   json={"model": "text-embedding-3-small", "input": "hello world",
                         "stream": True}, timeout=30)
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 2
    doc = records(gateway, email)[0]
    assert doc["estimated"] is False and doc["input_tokens"] == 2


H2 = ("LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so\n"
      "Protocols h2c http/1.1\n")


def curl_and_go(gw, email, proto, words=20, seconds=2, extra=()):
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 200, "messages": MSG}
    cmd = ["curl", "-sS", "-N", "--max-time", str(seconds), "-o", "/dev/null", proto,
           "-H", "Authorization: Bearer " + make_token(email),
           "-H", "Content-Type: application/json",
           "-H", "X-Fake-Reply: " + " ".join(["word"] * words)] + list(extra) + [
           "--data-binary", json.dumps(body), gw.url(CHAT)]
    subprocess.run(cmd, capture_output=True, timeout=60)


@pytest.mark.parametrize("proto", ["--http1.1", "--http2-prior-knowledge"])
def test_client_gone_over_http1_and_http2_is_read_to_the_end(make_gateway, up, proto):
    """HTTP/2 marks the stream aborted from another thread, even when no
    byte was being written: the stream is still read to its final usage."""
    gw = make_gateway(H2).start()
    email = new_email("gone-h2")
    # Written 7 bytes at a time: most reads of the upstream hold no event.
    curl_and_go(gw, email, proto, extra=["-H", "X-Fake-Split: 7",
                                         "-H", "X-Fake-Split-Delay-Ms: 10"])
    doc = records(gw, email, timeout=60)[0]
    assert doc["estimated"] is False and doc["output_tokens"] == 20
    assert doc["cost"] == billed_cost(billed(up)[-1])


def test_reading_on_for_a_gone_client_is_bounded(make_gateway, up):
    """AIProxyDrainTimeout: past it the stream is cut, the worker freed, and
    the request charged its output bound (it went on out of sight)."""
    gw = make_gateway("AIProxyDrainTimeout 1\n").start()
    email = new_email("drain")
    t0 = time.monotonic()
    curl_and_go(gw, email, "--http1.1", words=200, seconds=1,
                extra=["-H", "X-Fake-Chunk-Delay-Ms: 50"])
    doc = records(gw, email, timeout=30)[0]
    assert time.monotonic() - t0 < 8          # the stream alone takes 10 s
    assert doc["estimated"] is True and doc["output_tokens"] == 200
    assert doc["cost"] == doc["reserved"]
    assert "AIP01204" in gw.error_log()


def test_stream_labelled_json_is_never_free(gateway, up):
    """A stream sent as application/json is read as JSON (an upstream that
    answers a stream request in JSON is the likelier case); its usage is
    then not found, and it is charged its reservation, never $0."""
    email = new_email("sse-as-json")
    r = httpx.post(
        gateway.url(CHAT),
        headers={"Authorization": "Bearer " + make_token(email),
                 "X-Fake-Stream-Content-Type": "application/json"},
        json={"model": "gpt-4o-mini", "messages": MSG, "stream": True, "max_tokens": 50},
        timeout=30)
    assert r.status_code == 200
    doc = records(gateway, email)[0]
    assert doc["estimated"] is True and doc["cost"] == doc["reserved"] > 0
    assert doc["cost"] >= billed_cost(billed(up)[-1])
