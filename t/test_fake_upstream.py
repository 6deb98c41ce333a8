"""Self-test of t/fake_upstream.py (stdlib client only)."""

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
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"] == {"output_tokens": 5}

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
