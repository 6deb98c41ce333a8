"""Prices beyond flat token rates, through the real SDKs against the fake
upstream: long-context tiers (the whole request at the tier's rates once its
input passes the threshold) and hosted web search billed per call; the
price import command (tools/aiproxy-prices) on a LiteLLM-format fixture; and
the shipped price list covering every model the shipped configuration
allows.

Expected amounts are computed here from the AIProxyPrice lines below, in
integer pico-dollars."""
import datetime
import json
import os
import re
import subprocess
import sys
import time
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


@pytest.mark.expect_log(r"AH01110")
def test_web_search_stream_cut_before_its_usage_pays_the_searches_bound(gw, up):
    """message_start shows the first pass only: a stream cut before
    message_delta pays the input bound and every search max_uses allowed."""
    p = rates(SEARCH)
    email = new_email("search-cut")
    with pytest.raises(Exception):
        with claude(gw, email).messages.stream(
                model="claude-search", max_tokens=100, messages=MSG, tools=[SEARCH_TOOL],
                extra_headers={"X-Fake-Web-Searches": "2", "X-Fake-Want": "60",
                               "X-Fake-Cut-After": "12"}) as s:
            for _ in s.text_stream:
                pass
    doc = record(gw, email)
    assert doc["estimated"] is True
    assert doc["web_search_calls"] == 3
    assert doc["input_tokens"] == 4 * p["context"]
    assert doc["cost"] == doc["reserved"] - (100 - doc["output_tokens"]) * p["output"]


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


# ------------------------------------------------------------------ the import command

TOOL = os.path.join(ROOT, "admin/aiproxy-prices")
FIXTURE = os.path.join(ROOT, "t/data/litellm-fixture.json")
# LiteLLM 1.110.2's entries for the models shipped here (and a few more),
# copied with their numbers as written from the wheel's
# litellm/model_prices_and_context_window_backup.json.
LITELLM = os.path.join(ROOT, "t/data/litellm-1.110.2-prices.json")
SHIPPED_CONFS = ["conf/aiproxy.conf", "conf/httpd.conf", "conf/debian/aiproxy.conf"]


def prices_tool(*args):
    p = subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    return p.returncode, p.stdout, p.stderr


def price_lines(text):
    return {w[1]: " ".join(w[2:]) for w in (l.split() for l in text.splitlines())
            if len(w) > 1 and w[0] == "AIProxyPrice"}


def test_import_converts_exactly_and_flags_what_it_cannot_carry():
    rc, out, err = prices_tool("--from", FIXTURE, "--models",
                               "chat-a,chat-same,claude-tiered,tier-unreachable,an-embed,"
                               "a-moderation,tier-no-write,two-tiers,seven-decimals,"
                               "no-max-output,an-image-model,absent")
    assert rc == 1, err
    assert price_lines(out) == {
        # 1.5e-07 USD per token is 0.15 per 1M, with no float drift; the
        # cached rate equal to the input's is left to its default.
        "chat-a": "input=0.15 cached=0.075 output=0.6 max_output=16384 context=128000",
        "chat-same": "input=3 output=15 max_output=1000 context=200000",
        # Every tier rate, the 1-hour write's too; web search per call.
        "claude-tiered": "input=3 cached=0.3 cache_write=3.75 cache_write_1h=6 output=15 "
                         "max_output=64000 context=1000000 reasoning=yes long_context=200000 "
                         "long_input=6 long_cached=0.6 long_cache_write=7.5 "
                         "long_cache_write_1h=12 long_output=22.5 web_search=0.01",
        # A tier at the window: no input reaches it.
        "tier-unreachable": "input=1 output=2 max_output=100 context=200000",
        "an-embed": "input=0.02",
        "a-moderation": "input=0 output=0",
    }
    for model, why in [("tier-no-write", "long_cache_write"), ("two-tiers", "one"),
                       ("seven-decimals", "more than 6 decimals"),
                       ("no-max-output", "max_output_tokens"),
                       ("an-image-model", "image_generation"), ("absent", "not in")]:
        assert re.search(r"^! %s: .*%s" % (model, why), err, re.M), (model, err)
        assert "# ! %s:" % model in out
    # Images: LiteLLM names no per-image ceiling; the line says nothing of
    # them (refused) and the output says why.
    assert "# ~ chat-a: takes images" in out


def test_imported_lines_are_what_httpd_reads(make_gateway):
    rc, out, _ = prices_tool("--from", FIXTURE, "--models",
                             "chat-a,chat-same,claude-tiered,tier-unreachable,an-embed,"
                             "a-moderation")
    assert rc == 0
    rc, log = make_gateway(out).configtest()
    assert rc == 0, log


def test_import_diff_shows_changed_added_and_missing(tmp_path):
    site = tmp_path / "prices.conf"
    site.write_text("# the site's\n"
                    "AIProxyPrice chat-a input=0.20 cached=0.075 output=0.60 max_output=16384 "
                    "context=128000 image=1445\n"
                    "AIProxyPrice claude-tiered input=3.00 cached=0.30 cache_write=3.75 "
                    "cache_write_1h=6.00 output=15.00 max_output=64000 context=1000000 "
                    "long_context=200000 long_input=6 long_cached=0.60 long_cache_write=7.50 "
                    "long_cache_write_1h=12 long_output=22.50 web_search=0.010\n"
                    "AIProxyPrice gone-model input=1 output=2 max_output=10\n")
    rc, out, err = prices_tool("--from", FIXTURE, "--diff", str(site), "--models",
                               "chat-a,claude-tiered,chat-same,gone-model")
    assert rc == 1, err
    lines = out.splitlines()
    # Changed: both lines and what changed; the site's image= is kept.
    i = lines.index("- AIProxyPrice chat-a                   input=0.2 cached=0.075 output=0.6 "
                    "max_output=16384 context=128000 image=1445")
    assert lines[i + 1] == ("+ AIProxyPrice chat-a                   input=0.15 cached=0.075 "
                            "output=0.6 max_output=16384 context=128000 image=1445")
    assert lines[i + 2] == "  (input 0.2 -> 0.15)"
    # Added, and missing from the file (kept as it is).
    assert "+ AIProxyPrice chat-same                input=3 output=15 max_output=1000 " \
           "context=200000" in lines
    assert "! gone-model: not in litellm-fixture.json: kept as it is" in lines
    # The same values written otherwise (3.00, 0.010; reasoning is the
    # site's to say) are no change.
    assert not any("claude-tiered" in l for l in lines)
    # Nothing to review: status 0.
    rc, out, _ = prices_tool("--from", FIXTURE, "--diff", str(site), "--models",
                             "claude-tiered")
    assert rc == 0 and "# no changes" in out


def test_import_update_rewrites_only_changed_lines(tmp_path):
    site = tmp_path / "prices.conf"
    site.write_text("# Reviewed long ago\n\n"
                    "AIProxyPrice chat-a   input=0.20 cached=0.075 output=0.60 max_output=16384 "
                    "context=128000 image=1445\n"
                    "AIProxyPrice chat-same   input=3.00 output=15.00 max_output=1000 "
                    "context=200000  # same, written otherwise\n")
    conf = tmp_path / "site.conf"
    conf.write_text("<Location /a>\n    AIProxyRoute openai\n"
                    "    AIProxyModels chat-a chat-same # a comment\n</Location>\n"
                    "AIProxyModel an-embed openai\n")
    rc, out, err = prices_tool("--from", FIXTURE, "--config", str(conf), "--update",
                               str(site))
    assert rc == 1
    assert out.splitlines()[:4] == [
        "# Reviewed long ago", "",
        "AIProxyPrice chat-a                   input=0.15 cached=0.075 output=0.6 "
        "max_output=16384 context=128000 image=1445",
        "AIProxyPrice chat-same   input=3.00 output=15.00 max_output=1000 "
        "context=200000  # same, written otherwise"]
    assert re.search(r"^# Added \d{4}-\d\d-\d\d by aiproxy-prices from litellm-fixture.json\n"
                     r"AIProxyPrice an-embed +input=0.02\n\Z", out, re.M), out
    assert "+ AIProxyPrice an-embed" in err


def test_import_refuses_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert prices_tool("--from", str(bad), "--models", "x")[0] == 2
    bad.write_text("[1, 2]")
    assert prices_tool("--from", str(bad), "--models", "x")[0] == 2
    assert prices_tool("--from", FIXTURE)[0] == 2          # no models named


# ------------------------------------------------------------------ the shipped price list

def shipped_models():
    """Every model the shipped configuration names (AIProxyModels,
    AIProxyModel), "*" aside: that one allows only priced models."""
    names = set()
    for path in SHIPPED_CONFS:
        with open(os.path.join(ROOT, path)) as f:
            for raw in f:
                w = raw.split("#", 1)[0].split()
                if w and w[0] == "AIProxyModels":
                    names.update(n for n in w[1:] if n != "*")
                elif w and w[0] == "AIProxyModel" and len(w) > 1:
                    names.add(w[1])
    return names


def test_shipped_prices_cover_every_model_the_shipped_configuration_allows():
    with open(os.path.join(ROOT, "conf/prices.conf")) as f:
        text = f.read()
    priced = set(price_lines(text))
    names = shipped_models()
    assert {"gpt-4o-mini", "claude-haiku-4-5"} <= names     # the parse found them
    assert names - priced == set()
    # Dated, with its source.
    m = re.search(r"^# Reviewed (\d{4}-\d\d-\d\d) against LiteLLM (\S+)", text, re.M)
    assert m, "prices.conf names no review date and source"
    assert datetime.date.fromisoformat(m.group(1)) <= datetime.date.today()


def test_shipped_prices_are_what_the_import_gives():
    """The shipped lines equal LiteLLM's, but for the models it does not
    name under their provider's name (kept, and reported)."""
    rc, out, err = prices_tool("--from", LITELLM, "--config", "conf/aiproxy.conf",
                               "--config", "conf/debian/aiproxy.conf",
                               "--diff", "conf/prices.conf", "--source", "litellm 1.110.2")
    assert rc == 1, err
    # The media models (priced per image, minute or character, reviewed by
    # hand against OpenAI's pricing page) are not in the excerpt, which
    # holds token-priced models: kept, and reported, like the four above.
    assert sorted(out.splitlines()[1:]) == sorted(
        "! %s: not in litellm 1.110.2: kept as it is" % m
        for m in ("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022",
                  "claude-sonnet-4-20250514", "claude-opus-4-1",
                  "dall-e-3", "dall-e-2", "whisper-1", "tts-1", "tts-1-hd")), out
