"""Prices beyond flat token rates, through the real SDKs against the fake
upstream: long-context tiers (the whole request at the tier's rates once its
input passes the threshold) and hosted web search billed per call; the
price import command (tools/aiproxy-prices) on a LiteLLM-format fixture; and
the shipped price list covering every model the shipped configuration
allows.

Expected amounts are computed here from the AIProxyPrice lines below, in
integer pico-dollars."""
import json
import os
import re
import subprocess
import sys
from decimal import Decimal

import anthropic
import openai
import pytest

from conftest import ROOT, Gateway, make_token
from helpers import new_email

# USD per 1M tokens -> pico-dollars per token: x 10^6.
TIER = ("AIProxyPrice claude-tier input=1 cached=0.10 cache_write=1.25 output=5 "
        "max_output=1000 context=20000 long_context=2000 long_input=2 long_cached=0.20 "
        "long_cache_write=2.50 long_output=7.50")
GPT_TIER = ("AIProxyPrice gpt-tier input=1 cached=0.50 output=4 max_output=1000 "
            "context=20000 long_context=2000 long_input=2 long_output=8")
SEARCH = ("AIProxyPrice claude-search input=1 output=5 max_output=1000 context=20000 "
          "web_search=0.01")
NO_SEARCH = "AIProxyPrice claude-nosearch input=1 output=5 max_output=1000 context=20000"
CONF = "\n".join([TIER, GPT_TIER, SEARCH, NO_SEARCH, """
<Location /pr/anthropic/v1>
    AIProxyRoute anthropic
    AIProxyModels claude-tier claude-search claude-nosearch
</Location>
<Location /pr/openai/v1>
    AIProxyRoute openai
    AIProxyModels gpt-tier
</Location>
"""])
MSG = [{"role": "user", "content": "tell me a story"}]
SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


def rates(line):
    """An AIProxyPrice line's rates in pico-dollars per token (per call for
    web_search), and its token limits."""
    out = {}
    for w in line.split()[2:]:
        k, v = w.split("=", 1)
        out[k] = (int(v) if k in ("max_output", "context", "long_context")
                  else int(Decimal(v) * (10 ** 12 if k == "web_search" else 10 ** 6)))
    return out


@pytest.fixture(scope="module")
def gw(store, upstream):
    with Gateway(store, upstream, extra_conf=CONF) as g:
        yield g


@pytest.fixture
def up(upstream):
    upstream.reset()
    return upstream


def claude(gw, email):
    return anthropic.Anthropic(base_url=gw.url("/pr/anthropic"), api_key=make_token(email),
                               max_retries=0)


def record(gw, email):
    import time
    for _ in range(200):
        doc = gw.db().requests.find_one({"email": email})
        if doc:
            return doc
        time.sleep(0.05)
    raise AssertionError("no record for " + email)


def billed(up):
    return up._call("GET", "/__billed")


# ------------------------------------------------------------------ long-context tiers

def tier_cost(p, input, cached=0, write=0, output=0):
    long = input + cached + write > p["long_context"]
    pre = "long_" if long else ""
    return (input * p[pre + "input"] + cached * p[pre + "cached"]
            + write * p[pre + "cache_write"] + output * p[pre + "output"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("input,cached,write,long", [
    (1500, 400, 100, False),   # exactly at the threshold: standard rates
    (1500, 400, 101, True),    # one cache-write token above: all at the tier's
    (10, 2100, 0, True),       # cached input counts toward the threshold
])
def test_anthropic_long_input_pays_the_tier_for_every_token(gw, up, stream, input, cached,
                                                            write, long):
    p = rates(TIER)
    email = new_email("tier")
    usage = json.dumps({"input_tokens": input, "cache_read_input_tokens": cached,
                        "cache_creation": write, "output_tokens": 40})
    # A body as large as the input it claims, as a real one would be.
    big = [{"role": "user", "content": "word " * 600}]
    client = claude(gw, email)
    if stream:
        with client.messages.stream(model="claude-tier", max_tokens=100, messages=big,
                                    extra_headers={"X-Fake-Usage": usage}) as s:
            s.get_final_message()
    else:
        client.messages.create(model="claude-tier", max_tokens=100, messages=big,
                               extra_headers={"X-Fake-Usage": usage})
    doc = record(gw, email)
    want = tier_cost(p, input, cached, write, 40)
    short = (input * p["input"] + cached * p["cached"] + write * p["cache_write"]
             + 40 * p["output"])
    assert (want != short) == long
    assert doc["cost"] == want and doc["estimated"] is False
    assert doc["cost"] <= doc["reserved"]


def test_reservation_takes_the_tier_when_the_input_may_pass_it(gw, up):
    p = rates(TIER)
    # A body within the threshold cannot bring a long input: standard rates,
    # at the dearest input rate (the cache write).
    email = new_email("tier-short")
    raw = claude(gw, email).messages.with_raw_response.create(
        model="claude-tier", max_tokens=100, messages=MSG)
    n = len(raw.http_request.content)
    assert n < p["long_context"]
    doc = record(gw, email)
    assert doc["reserved"] == n * p["cache_write"] + 100 * p["output"]
    # One that may pass it is held at the tier's rates, for every token.
    email = new_email("tier-long")
    big = [{"role": "user", "content": "word " * 600}]
    raw = claude(gw, email).messages.with_raw_response.create(
        model="claude-tier", max_tokens=100, messages=big)
    n = len(raw.http_request.content)
    assert n > p["long_context"]
    doc = record(gw, email)
    assert doc["reserved"] == n * p["long_cache_write"] + 100 * p["long_output"]
    # A cap between the two holds refuses the long request before it goes.
    email = new_email("tier-cap")
    gw.set_cap(email, n * p["cache_write"] + 100 * p["output"])
    sent = len(billed(up))
    with pytest.raises(anthropic.RateLimitError):
        claude(gw, email).messages.create(model="claude-tier", max_tokens=100,
                                          messages=big)
    assert len(billed(up)) == sent


def test_openai_long_input_pays_the_tier(gw, up):
    p = rates(GPT_TIER)
    email = new_email("gtier")
    client = openai.OpenAI(base_url=gw.url("/pr/openai/v1"), api_key=make_token(email),
                           max_retries=0)
    big = [{"role": "user", "content": "word " * 600}]
    # OpenAI counts cached tokens inside prompt_tokens.
    client.chat.completions.create(
        model="gpt-tier", messages=big, max_completion_tokens=50,
        extra_headers={"X-Fake-Usage": json.dumps({"prompt_tokens": 2500,
                                                   "cached_tokens": 1000,
                                                   "completion_tokens": 30})})
    doc = record(gw, email)
    # long_cached defaults to the tier's input rate, as cached does.
    assert doc["cost"] == 2500 * p["long_input"] + 30 * p["long_output"]
    assert doc["cost"] <= doc["reserved"]


# ------------------------------------------------------------------ web search

@pytest.mark.parametrize("stream", [False, True])
def test_web_search_is_charged_per_call_and_reserved_for_max_uses(gw, up, stream):
    p = rates(SEARCH)
    email = new_email("search")
    client = claude(gw, email)
    hdrs = {"X-Fake-Web-Searches": "2"}
    if stream:
        with client.messages.stream(model="claude-search", max_tokens=100, messages=MSG,
                                    tools=[SEARCH_TOOL], extra_headers=hdrs) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(model="claude-search", max_tokens=100, messages=MSG,
                                     tools=[SEARCH_TOOL], extra_headers=hdrs)
    assert msg.usage.server_tool_use.web_search_requests == 2
    assert [b.type for b in msg.content][:2] == ["server_tool_use", "web_search_tool_result"]
    bill = billed(up)[-1]
    assert bill["web_search"] == 2
    doc = record(gw, email)
    assert doc["web_search_calls"] == 2 and doc["estimated"] is False
    assert doc["cost"] == (bill["input"] * p["input"] + bill["output"] * p["output"]
                           + 2 * p["web_search"])
    # Held: a window's input for each pass (one more than the searches),
    # the output bound, and every search max_uses allows.
    assert doc["reserved"] == (4 * p["context"] * p["input"] + 100 * p["output"]
                               + 3 * p["web_search"])


def test_web_search_without_searches_costs_tokens_only(gw, up):
    p = rates(SEARCH)
    email = new_email("search0")
    claude(gw, email).messages.create(model="claude-search", max_tokens=100, messages=MSG,
                                      tools=[SEARCH_TOOL],
                                      extra_headers={"X-Fake-Web-Searches": "0"})
    bill = billed(up)[-1]
    doc = record(gw, email)
    assert "web_search_calls" not in doc
    assert doc["cost"] == bill["input"] * p["input"] + bill["output"] * p["output"]


@pytest.mark.parametrize("model,tool,word", [
    # no per-call price: never free
    ("claude-nosearch", SEARCH_TOOL, "web_search= price"),
    # nothing bounds the calls
    ("claude-search", {"type": "web_search_20250305", "name": "web_search"}, "max_uses"),
    ("claude-search", dict(SEARCH_TOOL, max_uses=21), "max_uses"),
    ("claude-search", dict(SEARCH_TOOL, max_uses=0), "max_uses"),
    # another version (with code execution) or another hosted tool
    ("claude-search", dict(SEARCH_TOOL, type="web_search_20260209"), "web_search_20260209"),
    ("claude-search", {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2},
     "web_fetch"),
])
def test_web_search_refused_unless_priced_and_bounded(gw, up, model, tool, word):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude(gw, new_email("nosearch")).messages.create(
            model=model, max_tokens=10, messages=MSG, tools=[tool])
    assert e.value.status_code == 400
    assert e.value.body["error"]["code"] == "unsupported_feature"
    assert word in e.value.body["error"]["message"]
    assert billed(up) == []


def test_search_count_above_max_uses_is_charged_within_the_hold(gw, up):
    """A provider that reports more searches than max_uses allowed is
    charged no more than was held (and the log says so)."""
    gw.expect_log(r"AIP01202")
    email = new_email("search-over")
    claude(gw, email).messages.create(
        model="claude-search", max_tokens=100, messages=MSG,
        tools=[dict(SEARCH_TOOL, max_uses=1)],
        extra_headers={"X-Fake-Usage": json.dumps({"input_tokens": 10, "output_tokens": 5,
                                                   "web_search_requests": 10 ** 6})})
    doc = record(gw, email)
    assert doc["cost"] == doc["reserved"]


# ------------------------------------------------------------------ bad tier lines

@pytest.mark.parametrize("fields,needle", [
    ("input=1 output=2 max_output=9 long_input=2 long_output=4", "long_context="),
    ("input=1 output=2 max_output=9 long_context=100 long_output=4", "long_input="),
    ("input=1 output=2 max_output=9 long_context=100 long_input=2", "long_output="),
    ("input=1 cache_write=1.25 output=2 max_output=9 long_context=100 long_input=2 "
     "long_output=4", "long_cache_write="),
    ("input=1 output=2 max_output=9 context=100 long_context=100 long_input=2 "
     "long_output=4", "less than context="),
    ("input=1 output=2 max_output=9 web_search=ten", "web_search="),
])
def test_bad_tier_or_tool_price_stops_httpd(make_gateway, fields, needle):
    rc, out = make_gateway("AIProxyPrice m1 %s\n" % fields).configtest()
    assert rc != 0 and "AIProxyPrice" in out and needle in out, out
