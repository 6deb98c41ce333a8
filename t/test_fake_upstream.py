"""Self-test of t/fake_upstream.py (stdlib client only)."""

import collections
import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_upstream  # noqa: E402


@pytest.fixture(scope="module")
def fake():
    server, port = fake_upstream.start(port=0, name="selftest")
    yield port
    server.stop()


@pytest.fixture(autouse=True)
def reset(fake):
    call(fake, "POST", "/__reset")


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r, raw


def sse(raw):
    """Parse an SSE byte stream into [(event, data_str)]."""
    text = raw.decode().replace("\r\n", "\n")
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        ev, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((ev, "\n".join(data)))
    return out


CHAT = {"model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}]}


def test_chat_non_stream_usage(fake):
    r, raw = call(fake, "POST", "/v1/chat/completions", CHAT)
    assert r.status == 200
    d = json.loads(raw)
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-")
    assert d["model"] == "gpt-4o-mini"
    assert d["choices"][0]["message"]["role"] == "assistant"
    assert d["choices"][0]["finish_reason"] == "stop"
    u = d["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (5, 5, 10)
    assert u["prompt_tokens_details"]["cached_tokens"] == 0

    r, raw = call(fake, "POST", "/openai/v1/chat/completions", CHAT, {
        "X-Fake-Usage": '{"prompt_tokens":100,"completion_tokens":7,"cached_tokens":40}'})
    u = json.loads(raw)["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (100, 7, 107)
    assert u["prompt_tokens_details"]["cached_tokens"] == 40


def test_chat_stream_include_usage(fake):
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    r, raw = call(fake, "POST", "/v1/chat/completions", body)
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/event-stream")
    assert r.getheader("Transfer-Encoding") == "chunked"
    evs = sse(raw)
    assert evs[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in evs[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 10
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == fake_upstream.DEFAULT_REPLY

    # usage early: usage chunk precedes the last content chunk
    r, raw = call(fake, "POST", "/v1/chat/completions", body, {"X-Fake-Usage-Position": "early"})
    chunks = [json.loads(d) for _, d in sse(raw)[:-1]]
    ui = [i for i, c in enumerate(chunks) if c["choices"] == []]
    assert len(ui) == 1 and ui[0] < len(chunks) - 2

    # without include_usage: no usage key, no usage chunk
    r, raw = call(fake, "POST", "/v1/chat/completions", dict(CHAT, stream=True))
    chunks = [json.loads(d) for _, d in sse(raw)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_anthropic_stream_events(fake):
    body = {"model": "claude-3-5-haiku", "max_tokens": 100, "stream": True,
            "system": "you are terse",
            "messages": [{"role": "user", "content": "one two"}]}
    r, raw = call(fake, "POST", "/v1/messages", body, {"x-api-key": "sk-ant-x"})
    evs = sse(raw)
    names = [e for e, _ in evs]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 5
    for e, d in evs:
        assert json.loads(d)["type"] == e
    start = json.loads(evs[0][1])["message"]
    assert start["usage"] == {"input_tokens": 5, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1}
    delta = json.loads(evs[-2][1])
    # message_delta carries running totals, as Anthropic's do.
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"] == {
        "input_tokens": 5, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0, "output_tokens": 5}

    r, raw = call(fake, "POST", "/v1/messages", dict(body, stream=False), {
        "X-Fake-Usage": '{"prompt_tokens":9,"completion_tokens":3,"cached_tokens":2,"cache_creation":4}'})
    d = json.loads(raw)
    assert d["type"] == "message" and d["stop_reason"] == "end_turn"
    assert d["usage"] == {"input_tokens": 9, "output_tokens": 3,
                          "cache_read_input_tokens": 2, "cache_creation_input_tokens": 4}

    r, raw = call(fake, "POST", "/v1/messages", body, {"X-Fake-Status": "529"})
    assert r.status == 529
    assert json.loads(raw) == {"type": "error", "error": {"type": "overloaded_error",
                                                          "message": json.loads(raw)["error"]["message"]}}


def raw_chunks(port, path, body, headers):
    """Send a request on a raw socket; return (list of chunk payloads, closed_cleanly)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = json.dumps(body).encode()
    hdr = "".join("%s: %s\r\n" % kv for kv in headers.items())
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n%s\r\n" % (path, len(data), hdr)).encode() + data)
    f = s.makefile("rb")
    while f.readline() not in (b"\r\n", b""):
        pass
    chunks, clean = [], False
    while True:
        line = f.readline()
        if not line:
            break
        n = int(line.strip(), 16)
        if n == 0:
            f.readline()
            clean = True
            break
        chunks.append(f.read(n))
        f.readline()
    s.close()
    return chunks, clean


def test_split_and_crlf_still_parse(fake):
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    plain, clean = raw_chunks(fake, "/v1/chat/completions", body, {})
    assert clean
    split, clean = raw_chunks(fake, "/v1/chat/completions", body,
                              {"X-Fake-Split": "7", "X-Fake-CRLF": "1"})
    assert clean and len(split) > 20 and all(len(c) <= 7 for c in split)
    joined = b"".join(split)
    assert b"\r\n\r\n" in joined
    a = [(e, json.loads(d)["choices"] if d != "[DONE]" else d) for e, d in sse(b"".join(plain))]
    b = [(e, json.loads(d)["choices"] if d != "[DONE]" else d) for e, d in sse(joined)]
    assert a == b

    # Responses API stream, split at 5 bytes
    r, raw = call(fake, "POST", "/v1/responses",
                  {"model": "gpt-4o", "input": "a b c", "stream": True}, {"X-Fake-Split": "5"})
    evs = sse(raw)
    assert evs[0][0] == "response.created" and evs[-1][0] == "response.completed"
    assert [json.loads(d)["sequence_number"] for _, d in evs] == list(range(len(evs)))
    assert sum(e == "response.output_text.delta" for e, _ in evs) == 5
    done = json.loads(evs[-1][1])["response"]
    assert done["status"] == "completed" and done["usage"]["input_tokens"] == 3
    assert done["output"][0]["content"][0]["type"] == "output_text"


def test_cut_after(fake):
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    chunks, clean = raw_chunks(fake, "/v1/chat/completions", body, {"X-Fake-Cut-After": "3"})
    assert not clean
    evs = sse(b"".join(chunks))
    assert len(evs) == 3 and all(json.loads(d)["choices"] for _, d in evs)


def test_recorded_headers_and_control(fake):
    call(fake, "POST", "/v1/chat/completions", CHAT,
         {"Authorization": "Bearer sk-test-123", "X-Trace": "abc"})
    r, raw = call(fake, "GET", "/__requests")
    recs = json.loads(raw)
    assert len(recs) == 1
    rec = recs[0]
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["authorization"] == "Bearer sk-test-123"
    assert rec["headers"]["x-trace"] == "abc"
    assert json.loads(rec["body"]) == CHAT

    r, raw = call(fake, "POST", "/__control/next",
                  {"status": 429, "count": 2, "usage": {"prompt_tokens": 1}})
    assert r.status == 200
    for _ in range(2):
        r, raw = call(fake, "POST", "/v1/chat/completions", CHAT)
        assert r.status == 429 and r.getheader("retry-after") == "1"
        err = json.loads(raw)["error"]
        assert set(err) == {"message", "type", "param", "code"}
    r, raw = call(fake, "POST", "/v1/chat/completions", CHAT)
    assert r.status == 200

    # control-API usage override without any client header
    call(fake, "POST", "/__control/next", {"X-Fake-Usage": {"prompt_tokens": 11, "completion_tokens": 2}})
    r, raw = call(fake, "POST", "/v1/chat/completions", CHAT)
    assert json.loads(raw)["usage"]["total_tokens"] == 13
    r, raw = call(fake, "POST", "/__control/next", {"bogus": 1})
    assert r.status == 400


def test_models_and_embeddings(fake):
    r, raw = call(fake, "GET", "/v1/models")
    ids = [m["id"] for m in json.loads(raw)["data"]]
    assert {"gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "o3-mini"} <= set(ids)
    r, raw = call(fake, "POST", "/v1/embeddings",
                  {"model": "text-embedding-3-small", "input": ["a b", "c d e"]})
    d = json.loads(raw)
    assert d["object"] == "list" and [e["index"] for e in d["data"]] == [0, 1]
    assert d["usage"] == {"prompt_tokens": 5, "total_tokens": 5}


def test_cli_ready():
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "fake_upstream.py"),
                          "--port", "0", "--name", "cli"], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("READY ")
        port = int(line.split()[1])
        r, raw = call(port, "GET", "/__health")
        assert json.loads(raw)["name"] == "cli"
    finally:
        p.terminate()
        p.wait(5)


# ---------------------------------------------------------------- limits, n, reasoning,
# tool calls, background, billing ledger (through the SDKs where they fit)

import itertools  # noqa: E402
import urllib.request  # noqa: E402

import anthropic  # noqa: E402
import openai  # noqa: E402

MSGS = [{"role": "user", "content": "hello there world"}]  # 3 prompt words
REPLY_WORDS = len(fake_upstream.DEFAULT_REPLY.split())


def oai(port):
    return openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="sk-x", max_retries=0)


def ant(port):
    return anthropic.Anthropic(base_url="http://127.0.0.1:%d" % port, api_key="sk-ant-x",
                               max_retries=0)


def billed(port, clear=False):
    r, raw = call(port, "GET", "/__billed" + ("?clear=1" if clear else ""))
    assert r.status == 200
    return json.loads(raw)


def chunks_of(raw):
    return [json.loads(d) for _, d in sse(raw) if d != "[DONE]"]


MAX_OUTPUT = {  # as the brief gives it; any other model 4096
    "gpt-4o-mini": 16384, "gpt-4o": 16384, "gpt-4.1": 32768, "gpt-4.1-mini": 32768,
    "gpt-4.1-nano": 32768, "gpt-5": 128000, "gpt-5-mini": 128000, "gpt-5-nano": 128000,
    "o3": 100000, "o3-mini": 100000, "o4-mini": 100000,
    "claude-3-5-haiku-latest": 8192, "claude-3-5-haiku-20241022": 8192,
    "claude-haiku-4-5": 64000, "claude-sonnet-4-5": 64000,
    "claude-sonnet-4-20250514": 64000, "claude-opus-4-1": 32000,
    "some-other-model": 4096, "claude-unknown": 4096,
}


@pytest.mark.parametrize("model", sorted(MAX_OUTPUT))
def test_model_max_output_when_no_limit(fake, model):
    h = {"X-Fake-Want": "1000000"}
    if model.startswith("claude"):  # Anthropic needs max_tokens: use Responses for the table
        r, raw = call(fake, "POST", "/v1/responses", {"model": model, "input": "hi"}, h)
        u = json.loads(raw)["usage"]
        assert u["output_tokens"] == MAX_OUTPUT[model]
    else:
        r, raw = call(fake, "POST", "/v1/chat/completions", {"model": model, "messages": MSGS}, h)
        d = json.loads(raw)
        assert d["usage"]["completion_tokens"] == MAX_OUTPUT[model]
        assert d["choices"][0]["finish_reason"] == "length"
        # the text sent is capped at 2000 words; usage counts them all
        assert d["choices"][0]["message"]["content"].split() == \
            ["w%d" % i for i in range(1, 2001)]
    assert billed(fake)[-1]["output"] == MAX_OUTPUT[model]


def test_chat_limits(fake):
    c = oai(fake)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=10,
                                  extra_headers={"X-Fake-Want": "50"})
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == " ".join("w%d" % i for i in range(1, 11))
    assert r.usage.completion_tokens == 10 and r.usage.prompt_tokens == 3
    # both limits: the smaller wins, whichever it is
    for mct, mt in ((7, 10), (10, 7)):
        r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=mt,
                                      max_completion_tokens=mct,
                                      extra_headers={"X-Fake-Want": "50"})
        assert r.usage.completion_tokens == 7
    # under the limit: all of it, finish "stop"
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=100,
                                  extra_headers={"X-Fake-Want": "30"})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 30
    assert len(r.choices[0].message.content.split()) == 30
    # no want: the reply, cut to the limit
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=2)
    assert r.choices[0].message.content == "This is" and r.usage.completion_tokens == 2
    assert r.choices[0].finish_reason == "length"
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=5)
    assert r.choices[0].message.content == fake_upstream.DEFAULT_REPLY
    assert r.choices[0].finish_reason == "stop"
    # explicit usage still overrides the counts
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=10,
                                  extra_headers={"X-Fake-Want": "50", "X-Fake-Usage":
                                                 '{"prompt_tokens": 9, "completion_tokens": 4}'})
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (9, 4)
    assert r.choices[0].finish_reason == "length"
    # a huge stream stays small on the wire and counts in full
    s = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                  stream_options={"include_usage": True},
                                  extra_headers={"X-Fake-Want": "100000"})
    text, usage, finish = "", None, None
    for ch in s:
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
        usage = ch.usage or usage
    assert len(text.split()) == 2000 and usage.completion_tokens == 16384 and finish == "length"


def test_responses_and_messages_limits(fake):
    c = oai(fake)
    r = c.responses.create(model="gpt-4o", input="a b", max_output_tokens=16,
                           extra_headers={"X-Fake-Want": "40"})
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16 and len(r.output_text.split()) == 16
    r = c.responses.create(model="gpt-4o", input="a b", max_output_tokens=16,
                           extra_headers={"X-Fake-Want": "12"})
    assert r.status == "completed" and r.incomplete_details is None
    assert r.usage.output_tokens == 12
    # stream: ends in response.incomplete
    # (the SDK's get_final_response() wants response.completed, so read the event)
    with c.responses.stream(model="gpt-4o", input="a b", max_output_tokens=16,
                            extra_headers={"X-Fake-Want": "40"}) as st:
        evs = list(st)
    final = evs[-1].response
    assert evs[-1].type == "response.incomplete" and final.status == "incomplete"
    assert final.output[0].status == "incomplete" and len(final.output_text.split()) == 16
    assert final.usage.output_tokens == 16 and final.incomplete_details.reason == "max_output_tokens"

    a = ant(fake)
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=3, messages=MSGS,
                          extra_headers={"X-Fake-Want": "9"})
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3
    assert m.content[0].text == "w1 w2 w3"
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=MSGS)
    assert m.content[0].text == "This is" and m.stop_reason == "max_tokens"
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MSGS,
                          extra_headers={"X-Fake-Want": "9"})
    assert m.stop_reason == "end_turn" and m.usage.output_tokens == 9
    with a.messages.stream(model="claude-haiku-4-5", max_tokens=4, messages=MSGS,
                           extra_headers={"X-Fake-Want": "9"}) as st:
        text = "".join(st.text_stream)
        m = st.get_final_message()
    assert text == "w1 w2 w3 w4" and m.stop_reason == "max_tokens" and m.usage.output_tokens == 4


def test_chat_n(fake):
    c = oai(fake)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, n=3)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    assert all(ch.message.content == fake_upstream.DEFAULT_REPLY for ch in r.choices)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 3 * REPLY_WORDS)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, n=2, max_tokens=4,
                                  extra_headers={"X-Fake-Want": "10"})
    assert r.usage.completion_tokens == 8
    assert [ch.finish_reason for ch in r.choices] == ["length", "length"]

    s = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, n=3, stream=True,
                                  stream_options={"include_usage": True})
    texts, finish, usage = collections.defaultdict(str), {}, None
    for ch in s:
        for choice in ch.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
        usage = ch.usage or usage
    assert dict(texts) == {i: fake_upstream.DEFAULT_REPLY for i in range(3)}
    assert finish == {0: "stop", 1: "stop", 2: "stop"}
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 3 * REPLY_WORDS)
    rec = billed(fake)[-1]
    assert (rec["n"], rec["input"], rec["output"]) == (3, 3, 3 * REPLY_WORDS)

    r, raw = call(fake, "POST", "/v1/chat/completions", dict(CHAT, n=0))
    assert r.status == 400 and billed(fake)[-1]["status"] == 400


def test_reasoning(fake):
    c = oai(fake)
    # reasoning first, then text; both within the limit
    r = c.chat.completions.create(model="o3-mini", messages=MSGS, max_completion_tokens=12,
                                  n=2, extra_headers={"X-Fake-Want": "10", "X-Fake-Reasoning": "7"})
    assert r.usage.completion_tokens == 2 * 12
    assert r.usage.completion_tokens_details.reasoning_tokens == 2 * 7
    assert all(ch.message.content == "w1 w2 w3 w4 w5" and ch.finish_reason == "length"
               for ch in r.choices)
    rec = billed(fake)[-1]
    assert (rec["output"], rec["reasoning"], rec["n"]) == (24, 14, 2)
    # reasoning alone over the limit: all of the limit, no text
    r = c.chat.completions.create(model="o3-mini", messages=MSGS, max_completion_tokens=5,
                                  extra_headers={"X-Fake-Reasoning": "9"})
    assert r.usage.completion_tokens == 5 and r.usage.completion_tokens_details.reasoning_tokens == 5
    assert r.choices[0].message.content == "" and r.choices[0].finish_reason == "length"
    # chat stream: nothing of the reasoning is shown, usage counts it
    s = c.chat.completions.create(model="o3-mini", messages=MSGS, stream=True,
                                  stream_options={"include_usage": True},
                                  extra_headers={"X-Fake-Reasoning": "6"})
    text, usage = "", None
    for ch in s:
        if ch.choices:
            assert set(ch.choices[0].delta.model_dump(exclude_none=True)) <= {"role", "content",
                                                                           "refusal"}
            text += ch.choices[0].delta.content or ""
        usage = ch.usage or usage
    assert text == fake_upstream.DEFAULT_REPLY
    assert usage.completion_tokens == 6 + REPLY_WORDS
    assert usage.completion_tokens_details.reasoning_tokens == 6

    # Responses: a reasoning item, summary deltas one word each
    r = c.responses.create(model="o3", input="x", extra_headers={"X-Fake-Reasoning": "4"})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.usage.output_tokens == 4 + REPLY_WORDS
    assert r.usage.output_tokens_details.reasoning_tokens == 4
    with c.responses.stream(model="o3", input="x",
                            extra_headers={"X-Fake-Reasoning": "3000"}) as st:
        deltas = [e.delta for e in st if e.type == "response.reasoning_summary_text.delta"]
        final = st.get_final_response()
    assert len(deltas) == 2000 and all(len(d.split()) == 1 for d in deltas)
    assert final.usage.output_tokens_details.reasoning_tokens == 3000
    assert final.usage.output_tokens == 3000 + REPLY_WORDS
    assert final.output[0].type == "reasoning" and final.output_text == fake_upstream.DEFAULT_REPLY
    rec = billed(fake)[-1]
    assert (rec["output"], rec["reasoning"]) == (3000 + REPLY_WORDS, 3000)

    # Anthropic: a thinking block first, counted in output_tokens
    a = ant(fake)
    with a.messages.stream(model="claude-haiku-4-5", max_tokens=1000, messages=MSGS,
                           extra_headers={"X-Fake-Reasoning": "3"}) as st:
        evs = list(st)
        m = st.get_final_message()
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking == "r1 r2 r3" and m.content[1].text == fake_upstream.DEFAULT_REPLY
    kinds = [e.delta.type for e in evs if e.type == "content_block_delta"]
    assert kinds[:4] == ["thinking_delta"] * 3 + ["signature_delta"]
    assert m.usage.output_tokens == 3 + REPLY_WORDS
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MSGS,
                          extra_headers={"X-Fake-Reasoning": "3", "X-Fake-Want": "10"})
    assert m.content[1].text == "w1 w2" and m.usage.output_tokens == 5
    assert m.stop_reason == "max_tokens"
    rec = billed(fake)[-1]
    assert (rec["output"], rec["reasoning"]) == (5, 3)


def test_tool_calls(fake):
    args = json.dumps({"text": fake_upstream.DEFAULT_REPLY}, separators=(",", ":"))
    nwords = len(args.split())
    c = oai(fake)
    h = {"X-Fake-Tool-Call": "lookup"}
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=h)
    tc = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert tc.type == "function" and tc.function.name == "lookup"
    assert json.loads(tc.function.arguments) == {"text": fake_upstream.DEFAULT_REPLY}
    assert r.usage.completion_tokens == nwords

    s = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                  stream_options={"include_usage": True}, extra_headers=h)
    pieces, name, finish, usage = [], None, None, None
    for ch in s:
        for choice in ch.choices:
            for d in choice.delta.tool_calls or []:
                name = d.function.name or name
                if d.function.arguments:
                    pieces.append(d.function.arguments)
            finish = choice.finish_reason or finish
        usage = ch.usage or usage
    assert name == "lookup" and len(pieces) > 1 and "".join(pieces) == args
    assert finish == "tool_calls" and usage.completion_tokens == nwords

    # want rules apply to the arguments' text
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=4,
                                  extra_headers=dict(h, **{"X-Fake-Want": "20"}))
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == \
        {"text": "w1 w2 w3 w4"}
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4

    r = c.responses.create(model="gpt-4.1", input="x", extra_headers=h)
    fc = r.output[0]
    assert fc.type == "function_call" and fc.name == "lookup" and fc.arguments == args
    assert r.usage.output_tokens == nwords
    with c.responses.stream(model="gpt-4.1", input="x", extra_headers=h) as st:
        deltas = [e.delta for e in st if e.type == "response.function_call_arguments.delta"]
        final = st.get_final_response()
    assert len(deltas) > 1 and "".join(deltas) == args
    assert final.output[0].arguments == args and final.usage.output_tokens == nwords

    a = ant(fake)
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MSGS, extra_headers=h)
    assert m.stop_reason == "tool_use" and m.content[0].type == "tool_use"
    assert m.content[0].name == "lookup" and m.content[0].input == {"text": fake_upstream.DEFAULT_REPLY}
    assert m.usage.output_tokens == nwords
    with a.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MSGS,
                           extra_headers=h) as st:
        evs = list(st)
        m = st.get_final_message()
    starts = [e.content_block for e in evs if e.type == "content_block_start"]
    assert starts[0].type == "tool_use" and starts[0].name == "lookup"
    parts = [e.delta.partial_json for e in evs if e.type == "content_block_delta"]
    assert len(parts) > 1 and "".join(parts) == args
    assert m.stop_reason == "tool_use" and m.content[0].input == {"text": fake_upstream.DEFAULT_REPLY}
    assert m.usage.output_tokens == nwords


def test_background_responses(fake):
    c = oai(fake)
    r = c.responses.create(model="gpt-4o", input="a b c", background=True,
                           extra_headers={"X-Fake-Want": "300", "X-Fake-Reasoning": "20"})
    assert r.status == "queued" and r.background is True
    assert r.output == [] and r.usage is None
    rec = billed(fake)[-1]
    assert rec["background"] is True and rec["status"] == 200
    assert (rec["input"], rec["output"], rec["reasoning"]) == (3, 320, 20)
    # stream + background: streamed as usual
    with c.responses.stream(model="gpt-4o", input="a b c", background=True) as st:
        list(st)
        final = st.get_final_response()
    assert final.background is True and final.status == "completed"
    assert final.output_text == fake_upstream.DEFAULT_REPLY
    assert billed(fake)[-1]["output"] == final.usage.output_tokens == REPLY_WORDS


def test_stream_content_type(fake):
    body = dict(CHAT, stream=True)
    r, raw = call(fake, "POST", "/v1/chat/completions", body,
                  {"X-Fake-Stream-Content-Type": "application/json"})
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    evs = sse(raw)
    assert evs[-1] == (None, "[DONE]") and len(evs) > 3
    call(fake, "POST", "/__control/next", {"stream_content_type": "text/plain", "count": 2})
    r, raw = call(fake, "POST", "/v1/messages",
                  {"model": "claude-haiku-4-5", "max_tokens": 9, "messages": MSGS, "stream": True})
    assert r.getheader("Content-Type") == "text/plain" and sse(raw)[-1][0] == "message_stop"
    # non-stream answers keep application/json
    r, raw = call(fake, "POST", "/v1/chat/completions", CHAT)
    assert r.getheader("Content-Type") == "application/json"


def test_usage_on_choice(fake):
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    for n in (1, 2):
        r, raw = call(fake, "POST", "/v1/chat/completions", dict(body, n=n),
                      {"X-Fake-Usage-On-Choice": "1"})
        chunks = chunks_of(raw)
        assert all(c["choices"] for c in chunks)  # no usage-only chunk
        last = chunks[-1]
        assert last["choices"][0]["finish_reason"] == "stop"
        assert last["usage"]["completion_tokens"] == n * REPLY_WORDS
        assert all(c["usage"] is None for c in chunks[:-1])
    # the openai SDK reads it
    s = oai(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                          stream_options={"include_usage": True},
                                          extra_headers={"X-Fake-Usage-On-Choice": "1"})
    got = [(bool(ch.choices), ch.usage) for ch in s]
    assert got[-1][0] and got[-1][1].total_tokens == 3 + REPLY_WORDS
    # without include_usage it changes nothing
    r, raw = call(fake, "POST", "/v1/chat/completions", dict(CHAT, stream=True),
                  {"X-Fake-Usage-On-Choice": "1"})
    assert all("usage" not in c for c in chunks_of(raw))


BILL_KEYS = {"seq", "path", "model", "input", "cached", "cache_write", "cache_write_1h", "output",
             "reasoning", "n", "background", "status"}


def test_billed_ledger_every_route(fake):
    c, a = oai(fake), ant(fake)
    u = '{"prompt_tokens": 100, "completion_tokens": 7, "cached_tokens": 40, "cache_creation": 9}'
    r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"X-Fake-Usage": u})
    r2 = c.responses.create(model="gpt-4o", input="a b", extra_headers={"X-Fake-Usage": u})
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSGS,
                          extra_headers={"X-Fake-Usage": u})
    e = c.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    t = a.messages.count_tokens(model="claude-haiku-4-5", messages=MSGS)
    recs = billed(fake)
    assert all(set(x) == BILL_KEYS for x in recs)
    assert [x["path"] for x in recs] == ["/v1/chat/completions", "/v1/responses", "/v1/messages",
                                         "/v1/embeddings", "/v1/messages/count_tokens"]
    seqs = [x["seq"] for x in json.loads(call(fake, "GET", "/__requests")[1])]
    assert [x["seq"] for x in recs] == seqs
    ch, rs, ms, em, ct = recs
    assert r.usage.prompt_tokens == 100 and r.usage.prompt_tokens_details.cached_tokens == 40
    assert (ch["input"], ch["cached"], ch["cache_write"], ch["output"]) == (60, 40, 0, 7)
    assert (rs["input"], rs["cached"], rs["output"]) == (60, 40, 7)
    assert r2.usage.input_tokens_details.cached_tokens == 40
    assert (ms["input"], ms["cached"], ms["cache_write"], ms["output"]) == \
        (m.usage.input_tokens, m.usage.cache_read_input_tokens,
         m.usage.cache_creation_input_tokens, m.usage.output_tokens) == (100, 40, 9, 7)
    assert (em["input"], em["output"]) == (e.usage.prompt_tokens, 0) == (3, 0)
    assert t.input_tokens == 3 and (ct["input"], ct["output"], ct["status"]) == (0, 0, 200)
    assert all(x["status"] == 200 and x["n"] == 1 and x["background"] is False for x in recs)
    assert ch["model"] == "gpt-4o-mini" and ms["model"] == "claude-haiku-4-5"

    assert len(billed(fake, clear=True)) == 5 and billed(fake) == []
    c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    call(fake, "POST", "/__reset")
    assert billed(fake) == []


def test_billed_cut_hang_and_errors(fake):
    # a stream cut after 4 events (role, 3 words) stops generating there
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    chunks, clean = raw_chunks(fake, "/v1/chat/completions", body,
                               {"X-Fake-Cut-After": "4", "X-Fake-Want": "900"})
    assert not clean
    rec = billed(fake)[-1]
    assert rec["output"] == 3 and rec["input"] == 5 and rec["status"] == 200
    assert rec["cut"] is True

    # a hanging request is billed before the client gives up
    c = http.client.HTTPConnection("127.0.0.1", fake, timeout=0.5)
    c.request("POST", "/v1/messages", body=json.dumps(
        {"model": "claude-opus-4-1", "max_tokens": 64, "messages": MSGS}),
        headers={"X-Fake-Hang": "1", "X-Fake-Want": "100", "X-Fake-Reasoning": "10"})
    with pytest.raises(OSError):
        c.getresponse()
    c.close()
    rec = billed(fake)[-1]
    assert (rec["path"], rec["output"], rec["reasoning"], rec["status"]) == \
        ("/v1/messages", 64, 10, 200)

    # a delayed request abandoned early is billed too
    c = http.client.HTTPConnection("127.0.0.1", fake, timeout=0.3)
    c.request("POST", "/v1/responses", body=json.dumps({"model": "gpt-4o", "input": "x"}),
              headers={"X-Fake-Delay-Ms": "1500"})
    with pytest.raises(OSError):
        c.getresponse()
    c.close()
    assert billed(fake)[-1]["output"] == REPLY_WORDS

    # forced errors and invalid requests: recorded with zeros and their status
    call(fake, "POST", "/v1/chat/completions", CHAT, {"X-Fake-Status": "429"})
    call(fake, "POST", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 5,
                                        "messages": MSGS}, {"X-Fake-Status": "529"})
    call(fake, "POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": 5})
    c = http.client.HTTPConnection("127.0.0.1", fake, timeout=10)
    c.request("POST", "/v1/chat/completions", body=b"{not json")
    assert c.getresponse().status == 400
    c.close()
    errs = billed(fake)[-4:]
    assert [x["status"] for x in errs] == [429, 529, 400, 400]
    assert all(x["input"] == x["output"] == x["cached"] == x["reasoning"] == 0 for x in errs)
    # requests that are not model requests are not in the ledger
    n = len(billed(fake))
    call(fake, "GET", "/v1/models")
    call(fake, "POST", "/v1/unknown", {})
    assert len(billed(fake)) == n


def _reported(path, stream, raw):
    """The usage a response reports, as billed counts, or None."""
    if path.endswith("/chat/completions"):
        u = chunks_of(raw)[-1]["usage"] if stream else json.loads(raw)["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        return {"input": u["prompt_tokens"] - cached, "cached": cached, "cache_write": 0,
                "output": u["completion_tokens"],
                "reasoning": u["completion_tokens_details"]["reasoning_tokens"]}
    if path.endswith("/responses"):
        d = json.loads(sse(raw)[-1][1])["response"] if stream else json.loads(raw)
        u = d["usage"]
        if u is None:
            return None
        cached = u["input_tokens_details"]["cached_tokens"]
        return {"input": u["input_tokens"] - cached, "cached": cached, "cache_write": 0,
                "output": u["output_tokens"],
                "reasoning": u["output_tokens_details"]["reasoning_tokens"]}
    if stream:
        evs = [json.loads(d) for _, d in sse(raw)]
        u = dict(evs[0]["message"]["usage"], output_tokens=evs[-2]["usage"]["output_tokens"])
    else:
        u = json.loads(raw)["usage"]
    return {"input": u["input_tokens"], "cached": u["cache_read_input_tokens"],
            "cache_write": u["cache_creation_input_tokens"], "output": u["output_tokens"]}


def test_billed_equals_reported_usage(fake):
    """Across combinations of limits, want, reasoning, n, tool calls, streams."""
    cases = 0
    for path, stream, limit, want, reasoning, tool, extra in itertools.product(
            ("/v1/chat/completions", "/v1/responses", "/v1/messages"), (False, True),
            (None, 3, 50), (None, 0, 40), (0, 10), ("", "fn"), ({}, {"n": 2}, {"background": True})):
        if extra and not ({"n": 2} == extra and path.endswith("/chat/completions") or
                          "background" in extra and path.endswith("/responses")):
            continue
        body = {"model": "claude-haiku-4-5" if path.endswith("/messages") else "gpt-4o",
                "stream": stream}
        body.update(extra)
        if path.endswith("/responses"):
            body["input"] = "one two three"
            if limit is not None:
                body["max_output_tokens"] = limit
        else:
            body["messages"] = MSGS
            if path.endswith("/messages"):
                body["max_tokens"] = limit or 4096
            elif limit is not None:
                body["max_tokens"] = limit
        if stream and path.endswith("/chat/completions"):
            body["stream_options"] = {"include_usage": True}
        h = {"X-Fake-Reasoning": str(reasoning)}
        if want is not None:
            h["X-Fake-Want"] = str(want)
        if tool:
            h["X-Fake-Tool-Call"] = tool
        r, raw = call(fake, "POST", path, body, h)
        assert r.status == 200
        rec = billed(fake)[-1]
        rep = _reported(path, stream, raw)
        if rep is None:
            assert body.get("background") and not stream
        else:
            got = {k: rec[k] for k in rep}
            assert got == rep, (path, body, h)
        cap = limit or (4096 if path.endswith("/messages") else 16384)
        per = min(reasoning, cap) + min(REPLY_WORDS if want is None else want,
                                        cap - min(reasoning, cap))
        assert rec["output"] == rec["n"] * per, (path, body, h)
        cases += 1
    assert cases > 100


def test_anthropic_beta_fields_need_their_beta(fake):
    """context_management and deferred tools without their anthropic-beta
    are refused 400 and not billed, as Anthropic does (Claude Code sends
    both); with the beta (among others) they are answered and billed."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": MSGS,
            "context_management": {"edits": []},
            "tools": [{"name": "f", "input_schema": {"type": "object"},
                       "defer_loading": True}]}
    hdr = {"anthropic-version": "2023-06-01"}
    r, raw = call(fake, "POST", "/v1/messages", body, hdr)
    assert r.status == 400, raw
    err = json.loads(raw)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["message"] == "context_management: Extra inputs are not permitted"
    r, raw = call(fake, "POST", "/v1/messages/count_tokens", body,
                  dict(hdr, **{"anthropic-beta": "context-management-2025-06-27"}))
    assert r.status == 400
    assert json.loads(raw)["error"]["message"] == \
        "tools.0.defer_loading: Extra inputs are not permitted"
    r, raw = call(fake, "POST", "/v1/messages", body, dict(hdr, **{
        "anthropic-beta": "x-1, context-management-2025-06-27,advanced-tool-use-2025-11-20"}))
    assert r.status == 200, raw
    assert [b["status"] for b in billed(fake)] == [400, 400, 200]
    assert [b["input"] for b in billed(fake)][:2] == [0, 0]
