"""Streaming through the gateway: SSE passes event by event, usage is read
from the stream whatever its chunking, every stream is charged once."""
import json
import time

import anthropic
import httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY, PRICES, make_token, usd
from helpers import chat_cost

MSG = [{"role": "user", "content": "count to three please"}]  # 4 words


def request_doc(gw, email):
    return gw.db().requests.find_one({"email": email}, sort=[("time", -1)])


def wait_settled(gw, email, n=1, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if gw.db().requests.count_documents({"email": email}) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("request not settled")


def month_doc(gw, email):
    return gw.db().months.find_one({"email": email})


def sse_lines(gw, email, body, headers=None, path="/openai/v1/chat/completions"):
    """The raw stream as a client receives it."""
    h = {"Authorization": "Bearer " + make_token(email)}
    h.update(headers or {})
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", gw.url(path), json=body, headers=h) as r:
            return r, b"".join(r.iter_raw()).decode()


def test_chat_stream_hides_usage_chunk_it_asked_for(gateway, up):
    email = "stream1@example.com"
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(email))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                 stream=True))
    # The client did not ask for usage: every chunk it sees has choices.
    assert chunks and all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "This is a fake reply."
    sent = json.loads(up.requests()[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    wait_settled(gateway, email)
    doc = request_doc(gateway, email)
    assert doc["cost"] == chat_cost("gpt-4o-mini", 4, 5)
    assert doc["estimated"] is False
    m = month_doc(gateway, email)
    assert m["spent"] == doc["cost"] and m["reserved"] == 0 and m["holds"] == {}


def test_chat_stream_with_usage_requested(gateway, up):
    email = "stream2@example.com"
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(email))
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Fake-Usage": json.dumps({"prompt_tokens": 1000,
                                                    "completion_tokens": 300,
                                                    "cached_tokens": 600})}))
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens == 1000
    assert chunks[-1].choices == []
    wait_settled(gateway, email)
    assert request_doc(gateway, email)["cost"] == chat_cost("gpt-4o-mini", 1000, 300, 600)


@pytest.mark.parametrize("headers", [
    {"X-Fake-Split": "7"},
    {"X-Fake-Split": "1", "X-Fake-CRLF": "1"},
    {"X-Fake-CRLF": "1"},
    {"X-Fake-Usage-Position": "early"},
    {"X-Fake-Split": "13", "X-Fake-Usage-Position": "early", "X-Fake-CRLF": "1"},
])
def test_usage_found_whatever_the_chunking(gateway, up, headers):
    email = "split-%d@example.com" % abs(hash(json.dumps(headers, sort_keys=True)))
    headers = dict(headers, **{"X-Fake-Usage": json.dumps({"prompt_tokens": 77,
                                                           "completion_tokens": 11})})
    r, raw = sse_lines(gateway, email, {"model": "gpt-4o-mini", "messages": MSG,
                                        "stream": True}, headers)
    assert r.status_code == 200
    assert "data: [DONE]" in raw
    wait_settled(gateway, email)
    doc = request_doc(gateway, email)
    assert doc["cost"] == chat_cost("gpt-4o-mini", 77, 11) and not doc["estimated"]


def test_final_cost_arrives_in_an_sse_comment(gateway, up):
    email = "comment@example.com"
    r, raw = sse_lines(gateway, email, {"model": "gpt-4o-mini", "messages": MSG,
                                        "stream": True})
    assert r.headers["monthlyRequests"] == "0"
    assert "costMax" in r.headers and "cost" not in r.headers
    comment = [l for l in raw.splitlines() if l.startswith(": aiproxy ")]
    assert len(comment) == 1
    info = json.loads(comment[0][len(": aiproxy "):])
    wait_settled(gateway, email)
    doc = request_doc(gateway, email)
    assert info["cost"] == usd(doc["cost"])
    assert info["monthlyCost"] == usd(month_doc(gateway, email)["spent"])
    assert info["monthlyRequests"] == 1 and info["estimated"] is False
    # The comment comes before [DONE], so SDKs that stop there still got it.
    assert raw.index(": aiproxy ") < raw.index("data: [DONE]")


def test_events_are_not_buffered(gateway, up):
    """Each event reaches the client as the upstream sends it."""
    delay = 0.25
    h = {"X-Fake-Chunk-Delay-Ms": str(int(delay * 1000))}
    email = "timing@example.com"

    def arrivals(url, auth):
        times = []
        body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
        with httpx.Client(timeout=30) as c:
            t0 = time.monotonic()
            with c.stream("POST", url, json=body, headers=dict(h, Authorization=auth)) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        times.append(time.monotonic() - t0)
        return times

    direct = arrivals(up.base + "/v1/chat/completions", "Bearer x")
    through = arrivals(gateway.url("/openai/v1/chat/completions"),
                       "Bearer " + make_token(email))
    # The same events: the usage chunk the gateway asked for is hidden.
    assert len(through) == len(direct)
    gaps = [b - a for a, b in zip(through, through[1:])]
    assert min(gaps[:-1]) > delay * 0.6, gaps
    # Each content event arrives close to when the upstream sent it ([DONE]
    # comes one event later: the upstream sends the usage chunk first).
    for d, t in zip(direct[:-1], through[:-1]):
        assert abs(t - d) < 0.1, (direct, through)


@pytest.mark.expect_log(r"AH01110")
def test_upstream_cut_mid_stream_is_charged_an_estimate(gateway, up):
    email = "cut@example.com"
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
    h = {"Authorization": "Bearer " + make_token(email), "X-Fake-Cut-After": "4"}
    got = []
    with httpx.Client(timeout=30) as c:
        with pytest.raises(httpx.HTTPError):
            with c.stream("POST", gateway.url("/openai/v1/chat/completions"), json=body,
                          headers=h) as r:
                for line in r.iter_lines():
                    got.append(line)
    assert any(l.startswith("data: {") for l in got)
    wait_settled(gateway, email)
    doc = request_doc(gateway, email)
    assert doc["estimated"] is True
    assert doc["cost"] > 0 and doc["output_tokens"] >= 1
    m = month_doc(gateway, email)
    assert m["reserved"] == 0 and m["holds"] == {} and m["spent"] == doc["cost"]


def test_client_disconnect_settles_once(gateway, up):
    """The client goes early: the gateway reads the stream to its end (the
    provider bills it all) and charges its final usage, once."""
    email = "gone@example.com"
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True,
            "max_tokens": 50}
    h = {"Authorization": "Bearer " + make_token(email), "X-Fake-Chunk-Delay-Ms": "100",
         "X-Fake-Reply": " ".join(["word"] * 30)}
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", gateway.url("/openai/v1/chat/completions"), json=body,
                      headers=h) as r:
            for i, line in enumerate(r.iter_lines()):
                if i >= 4:
                    break
    wait_settled(gateway, email, timeout=15)
    time.sleep(1)
    assert gateway.db().requests.count_documents({"email": email}) == 1
    doc = request_doc(gateway, email)
    assert doc["estimated"] is False and doc["output_tokens"] == 30
    assert doc["cost"] == chat_cost("gpt-4o-mini", 4, 30)
    m = month_doc(gateway, email)
    assert m["reserved"] == 0 and m["holds"] == {} and m["requests"] == 1
    assert m["spent"] == doc["cost"]


def test_responses_api_plain_and_streamed(gateway, up):
    email = "resp@example.com"
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(email))
    usage = json.dumps({"prompt_tokens": 500, "completion_tokens": 40, "cached_tokens": 100})
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="say something", extra_headers={"X-Fake-Usage": usage})
    resp = raw.parse()
    assert resp.output_text == "This is a fake reply."
    expected = chat_cost("gpt-4o-mini", 500, 40, 100)
    assert raw.headers["cost"] == usd(expected)
    events = list(client.responses.create(model="gpt-4o-mini", input="say something",
                                          stream=True, extra_headers={"X-Fake-Usage": usage}))
    assert events[-1].type == "response.completed"
    wait_settled(gateway, email, n=2)
    docs = list(gateway.db().requests.find({"email": email}))
    assert [d["cost"] for d in docs] == [expected, expected]
    assert all(d["endpoint"] == "responses" for d in docs)


def test_final_event_ended_by_bare_crs_is_read(gateway, up):
    """A Responses stream carries usage in its last event; with bare-CR line
    ends that event's last CR is only known to end it when the stream ends."""
    email = "resp-cr@example.com"
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(email))
    usage = json.dumps({"prompt_tokens": 321, "completion_tokens": 12})
    events = list(client.responses.create(
        model="gpt-4o-mini", input="say something", stream=True,
        extra_headers={"X-Fake-Usage": usage, "X-Fake-CRLF": "cr"}))
    assert events[-1].type == "response.completed"
    wait_settled(gateway, email)
    doc = request_doc(gateway, email)
    assert doc["cost"] == chat_cost("gpt-4o-mini", 321, 12) and not doc["estimated"]


def anthropic_cost(model, inp, out, read=0, write=0):
    p = PRICES[model]
    return inp * p["input"] + read * p["cached"] + write * p["cache_write"] + out * p["output"]


def test_anthropic_messages_plain_and_streamed(gateway, up):
    email = "claude@example.com"
    client = anthropic.Anthropic(base_url=gateway.url("/anthropic"),
                                 api_key=make_token(email))
    usage = json.dumps({"input_tokens": 300, "output_tokens": 50,
                        "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200})
    # Long enough for the usage it reports: input is bounded by body bytes.
    content = "hi there " * 200
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=100,
        messages=[{"role": "user", "content": content}],
        extra_headers={"X-Fake-Usage": usage, "anthropic-beta": "test-beta-1"})
    msg = raw.parse()
    assert msg.content[0].text == "This is a fake reply."
    expected = anthropic_cost("claude-haiku-4-5", 300, 50, 1000, 200)
    assert raw.headers["cost"] == usd(expected)
    sent = up.requests()[-1]
    assert sent["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in sent["headers"]
    assert sent["headers"]["anthropic-version"]
    # Betas can change prices: only those AIProxyAnthropicBeta names pass.
    assert "anthropic-beta" not in sent["headers"]
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100,
                                messages=[{"role": "user", "content": content}],
                                extra_headers={"X-Fake-Usage": usage}) as s:
        text = "".join(s.text_stream)
    assert text == "This is a fake reply."
    wait_settled(gateway, email, n=2)
    docs = list(gateway.db().requests.find({"email": email}))
    assert [d["cost"] for d in docs] == [expected, expected]
    assert not any(d["estimated"] for d in docs)
