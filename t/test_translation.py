"""Translation between OpenAI Chat Completions and Anthropic Messages on a
route by model (/v1): the OpenAI SDK asking for a Claude model, the
Anthropic SDK asking for an OpenAI one. The fake upstream records what it
received, so each test checks the translated request as well as the
answer, and the charge at the serving provider's price."""
import base64
import json

import anthropic
import httpx
import openai
import pytest

from conftest import PRICES, Gateway, make_token, usd
from helpers import auth, new_email, wait_docs

CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o-mini"
TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Looks a word up.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"]}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def oai(gw, email):
    return openai.OpenAI(base_url=gw.url("/v1"), api_key=make_token(email),
                         max_retries=0)


def ant(gw, email):
    return anthropic.Anthropic(base_url=gw.url(""), api_key=make_token(email),
                               max_retries=0)


def sent(up):
    """The one request the upstream received: its path, headers, body."""
    seen = up.requests()
    assert len(seen) == 1, seen
    return seen[0]["path"], seen[0]["headers"], json.loads(seen[0]["body"])


def cost(model, inp, out, cached=0, write=0):
    p = PRICES[model]
    return (inp * p["input"] + cached * p["cached"] + write * p["cache_write"]
            + out * p["output"])


def spent(gw, email):
    docs = list(gw.db().requests.find({"email": email}))
    return sum(d.get("cost", 0) for d in docs), docs


# ------------------------------------------------- OpenAI client, Claude model

def test_chat_to_claude_answer_usage_and_price(gateway, up):
    email = new_email("xl-chat")
    raw = oai(gateway, email).chat.completions.with_raw_response.create(
        model=CLAUDE, max_completion_tokens=100, temperature=0.5, stop="END",
        user="student-7",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "say hello to me"}])
    c = raw.parse()
    assert c.object == "chat.completion"
    assert c.choices[0].message.content == "This is a fake reply."
    assert c.choices[0].finish_reason == "stop"
    # "Be brief." + "say hello to me": 6 words in, 5 out.
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (6, 5)
    assert c.usage.total_tokens == 11
    path, headers, body = sent(up)
    assert path == "/v1/messages"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in headers}
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "say hello to me"}]}]
    assert body["max_tokens"] == 100 and body["temperature"] == 0.5
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "student-7"}
    assert "max_completion_tokens" not in body and "user" not in body
    doc = wait_docs(gateway, email)[0]
    assert doc["cost"] == cost(CLAUDE, 6, 5)
    assert raw.headers["cost"] == usd(doc["cost"])
    # Recorded under the client's endpoint, served by anthropic, once.
    assert doc["provider"] == "anthropic" and doc["model"] == CLAUDE
    assert doc["endpoint"] == "chat/completions"
    assert len(list(gateway.db().requests.find({"email": email}))) == 1


def test_chat_to_claude_cached_and_cache_write_tokens(gateway, up):
    email = new_email("xl-cache")
    up.next(usage={"input_tokens": 10, "output_tokens": 4,
                   "cache_read_input_tokens": 300,
                   "cache_creation_input_tokens": 50})
    raw = oai(gateway, email).chat.completions.with_raw_response.create(
        model=CLAUDE, messages=[{"role": "user", "content": "cache me"}])
    u = raw.parse().usage
    assert u.prompt_tokens == 360 and u.completion_tokens == 4
    assert u.prompt_tokens_details.cached_tokens == 300
    assert u.model_extra["cache_creation_input_tokens"] == 50
    doc = wait_docs(gateway, email)[0]
    assert doc["cost"] == cost(CLAUDE, 10, 4, cached=300, write=50)
    assert raw.headers["cost"] == usd(doc["cost"])


def test_chat_tools_call_and_result_turn(gateway, up):
    email = new_email("xl-tools")
    client = oai(gateway, email)
    up.next(tool_call="lookup")
    c = client.chat.completions.create(
        model=CLAUDE, tools=[TOOL], tool_choice="required",
        parallel_tool_calls=False,
        messages=[{"role": "user", "content": "look up cats"}])
    _, _, body = sent(up)
    assert body["tools"] == [{"name": "lookup", "description": "Looks a word up.",
                              "input_schema": TOOL["function"]["parameters"]}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"text": "This is a fake reply."}
    # The result turn: two tool results make one user turn.
    up.reset()
    client.chat.completions.create(model=CLAUDE, tools=[TOOL], messages=[
        {"role": "user", "content": "look up cats"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {
                "name": "lookup", "arguments": call.function.arguments}},
            {"id": "call_2", "type": "function", "function": {
                "name": "lookup", "arguments": "{\"text\":\"dogs\"}"}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "cats: felines"},
        {"role": "tool", "tool_call_id": "call_2", "content": "dogs: canines"},
        {"role": "user", "content": "and so?"}])
    _, _, body = sent(up)
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call.id, "name": "lookup",
         "input": {"text": "This is a fake reply."}},
        {"type": "tool_use", "id": "call_2", "name": "lookup",
         "input": {"text": "dogs"}}]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id,
         "content": [{"type": "text", "text": "cats: felines"}]},
        {"type": "tool_result", "tool_use_id": "call_2",
         "content": [{"type": "text", "text": "dogs: canines"}]},
        {"type": "text", "text": "and so?"}]}
    assert len(body["messages"]) == 3


def test_chat_images_and_multi_turn(gateway, up):
    email = new_email("xl-img")
    oai(gateway, email).chat.completions.create(model=CLAUDE, messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {
                "url": "data:image/png;base64," + PNG, "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    _, _, body = sent(up)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    assert body["messages"][2]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG}},
        {"type": "image", "source": {"type": "url",
                                     "url": "https://example.com/a.png"}}]


def test_output_limit_is_the_reserved_one(gateway, up):
    """No limit asked: the gateway's bound (the model's max_output) is
    written, so the provider cannot produce more than was reserved."""
    oai(gateway, new_email("xl-lim")).chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    _, _, body = sent(up)
    assert body["max_tokens"] == PRICES[CLAUDE]["max_output"]


@pytest.mark.parametrize("extra, field", [
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}}}, "response_format"),
    ({"seed": 3}, "seed"),
    ({"messages": [{"role": "user", "content": "a", "name": "bob"}]},
     "messages[0].name"),
    ({"messages": [{"role": "user", "content": [
        {"type": "input_text", "text": "x"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "a"},
                   {"role": "system", "content": "late"}]}, "messages[1].content"),
    # Never dropped unseen: a member of an object the translation carries.
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/a.png", "zoom": 2}}]}]},
     "messages[0].content[0].image_url.zoom"),
    ({"stream_options": {"include_usage": True, "extra": 1}}, "stream_options.extra"),
    ({"response_format": {"type": "text", "strict": True}}, "response_format.strict"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}},
     "tool_choice.function.x"),
])
def test_untranslatable_fields_refused_and_free(gateway, up, extra, field):
    email = new_email("xl-refuse")
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    r = httpx.post(gateway.url("/v1/chat/completions"), json=body,
                   headers=auth(email), timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "untranslatable" and err["type"] == "invalid_request_error"
    assert "'%s'" % field in err["message"]
    assert up.requests() == []
    assert spent(gateway, email)[0] == 0


def test_provider_error_in_openai_shape(gateway, up):
    up.next(status=400)
    with pytest.raises(openai.BadRequestError) as e:
        oai(gateway, new_email("xl-err")).chat.completions.create(
            model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400
    err = e.value.body
    assert isinstance(err, dict) and err["type"] == "invalid_request_error"
    assert err["message"] and "code" in err


def test_provider_error_to_a_stream_in_openai_shape(gateway, up):
    email = new_email("xl-serr")
    up.next(status=400)
    with pytest.raises(openai.BadRequestError) as e:
        list(oai(gateway, email).chat.completions.create(
            model=CLAUDE, stream=True, messages=[{"role": "user", "content": "x"}]))
    assert e.value.body["type"] == "invalid_request_error" and "code" in e.value.body
    assert spent(gateway, email)[0] == 0


def test_cap_refuses_translated_as_native(gateway, up):
    email = new_email("xl-cap")
    gateway.set_cap(email, 1000)          # far below any reservation
    statuses = []
    for model in (CLAUDE, GPT):
        r = httpx.post(gateway.url("/v1/chat/completions"), headers=auth(email),
                       json={"model": model,
                             "messages": [{"role": "user", "content": "x"}]},
                       timeout=10)
        statuses.append((r.status_code, r.json()["error"]["code"]))
    assert statuses[0] == statuses[1] and statuses[0][0] >= 400
    assert up.requests() == []


@pytest.mark.parametrize("usage", [False, True])
def test_chat_stream_from_claude(gateway, up, usage):
    email = new_email("xl-stream")
    extra = {"stream_options": {"include_usage": True}} if usage else {}
    raw = oai(gateway, email).chat.completions.with_raw_response.create(
        model=CLAUDE, stream=True,
        messages=[{"role": "user", "content": "stream to me"}], **extra)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a fake reply."
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks
              if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    with_usage = [c for c in chunks if c.usage]
    _, _, body = sent(up)
    assert body["stream"] is True and "stream_options" not in body
    if usage:
        assert len(with_usage) == 1 and with_usage[0].choices == []
        assert (with_usage[0].usage.prompt_tokens,
                with_usage[0].usage.completion_tokens) == (3, 5)
    else:
        assert with_usage == []
    doc = wait_docs(gateway, email)[0]
    assert doc["cost"] == cost(CLAUDE, 3, 5)
    assert spent(gateway, email)[0] == doc["cost"]


def test_chat_stream_tool_call_from_claude(gateway, up):
    up.next(tool_call="lookup")
    stream = oai(gateway, new_email("xl-stool")).chat.completions.create(
        model=CLAUDE, stream=True, tools=[TOOL],
        messages=[{"role": "user", "content": "look up cats"}])
    calls, finish = {}, None
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            d = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            d["id"] = tc.id or d["id"]
            if tc.function and tc.function.name:
                d["name"] = tc.function.name
            d["args"] += (tc.function.arguments or "") if tc.function else ""
        if c.choices and c.choices[0].finish_reason:
            finish = c.choices[0].finish_reason
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["name"] == "lookup" and calls[0]["id"]
    assert json.loads(calls[0]["args"]) == {"text": "This is a fake reply."}


# ------------------------------------------------ Anthropic client, GPT model

def test_messages_to_gpt_answer_usage_and_price(gateway, up):
    email = new_email("xl-msg")
    up.next(usage={"prompt_tokens": 40, "completion_tokens": 5,
                   "cached_tokens": 30})
    raw = ant(gateway, email).messages.with_raw_response.create(
        model=GPT, max_tokens=50, system="Be brief.", stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "say hello"},
                  {"role": "assistant", "content": "hi"},
                  {"role": "user", "content": [{"type": "text", "text": "again"}]}])
    m = raw.parse()
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].text == "This is a fake reply."
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (10, 5)
    assert m.usage.cache_read_input_tokens == 30
    path, headers, body = sent(up)
    assert path == "/v1/chat/completions"
    assert "anthropic-version" not in headers
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "say hello"}]},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]}]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["stop"] == ["END"] and body["user"] == "u-1"
    doc = wait_docs(gateway, email)[0]
    assert doc["cost"] == cost(GPT, 10, 5, cached=30)
    assert raw.headers["cost"] == usd(doc["cost"])


def test_messages_stream_from_gpt(gateway, up):
    email = new_email("xl-mstream")
    with ant(gateway, email).messages.stream(
            model=GPT, max_tokens=50,
            messages=[{"role": "user", "content": "stream to me"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "This is a fake reply."
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 5)
    _, _, body = sent(up)
    # The gateway asks for the usage, which the charge needs.
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    doc = wait_docs(gateway, email)[0]
    assert doc["cost"] == cost(GPT, 3, 5)


def test_messages_stream_tool_use_from_gpt(gateway, up):
    up.next(tool_call="lookup")
    with ant(gateway, new_email("xl-mstool")).messages.stream(
            model=GPT, max_tokens=50,
            tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": "look up"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = [b for b in final.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "lookup"
    assert use[0].input == {"text": "This is a fake reply."}


def test_messages_tools_to_gpt(gateway, up):
    email = new_email("xl-mtools")
    up.next(tool_call="lookup")
    m = ant(gateway, email).messages.create(
        model=GPT, max_tokens=50,
        tools=[{"name": "lookup", "description": "Looks up.",
                "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "lookup",
                     "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "look up cats"},
                  {"role": "assistant", "content": [
                      {"type": "tool_use", "id": "toolu_1", "name": "lookup",
                       "input": {"text": "dogs"}}]},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": "toolu_1",
                       "content": "dogs: canines"},
                      {"type": "image", "source": {"type": "base64",
                       "media_type": "image/png", "data": PNG}}]}])
    _, _, body = sent(up)
    assert body["tools"] == [{"type": "function", "function": {
        "name": "lookup", "description": "Looks up.",
        "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["tool_calls"] == [{"id": "toolu_1", "type": "function",
        "function": {"name": "lookup", "arguments": "{\"text\":\"dogs\"}"}}]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1",
                                   "content": [{"type": "text", "text": "dogs: canines"}]}
    assert body["messages"][3] == {"role": "user", "content": [{"type": "image_url",
        "image_url": {"url": "data:image/png;base64," + PNG}}]}
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert use.name == "lookup" and use.input == {"text": "This is a fake reply."}


def test_messages_untranslatable_refused(gateway, up):
    email = new_email("xl-mrefuse")
    for extra, field in (({"thinking": {"type": "enabled", "budget_tokens": 1024}},
                          "thinking"),
                         ({"top_k": 5}, "top_k"),
                         ({"context_management": {"edits": [
                             {"type": "clear_tool_uses_20250919"}]}},
                          "context_management.edits"),
                         ({"thinking": {"type": "adaptive", "budget_tokens": 9}},
                          "thinking.budget_tokens"),
                         ({"messages": [{"role": "user", "content": [
                             {"type": "text", "text": "x", "citations": [
                                 {"type": "char_location", "cited_text": "x",
                                  "document_index": 0, "start_char_index": 0,
                                  "end_char_index": 1}]}]}]},
                          "messages[0].content[0].citations"),
                         ({"messages": [{"role": "assistant", "content": [
                             {"type": "thinking", "thinking": "hm",
                              "signature": "sig"}]}]}, "messages[0].content[0]")):
        body = {"model": GPT, "max_tokens": 2000,
                "messages": [{"role": "user", "content": "hi"}]}
        body.update(extra)
        r = httpx.post(gateway.url("/v1/messages"), json=body, headers=auth(email),
                       timeout=10)
        assert r.status_code == 400, (field, r.text)
        assert "'%s'" % field in r.text and "untranslatable" in r.text
    assert up.requests() == []
    assert spent(gateway, email)[0] == 0


def test_provider_error_in_anthropic_shape(gateway, up):
    up.next(status=400)
    with pytest.raises(anthropic.BadRequestError) as e:
        ant(gateway, new_email("xl-merr")).messages.create(
            model=GPT, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert e.value.body["error"]["message"]


# ------------------------------------------------------ broken answers, failover

@pytest.mark.parametrize("raw", ["not json at all", "[1, 2]", '{"content": 5}',
                                 '{"choices": "x"}' + " " * 5000])
def test_garbage_answer_is_502_never_a_crash(gateway, up, raw):
    """A provider answer the translator cannot read: 502 in the client's
    shape, the child alive (the next request is answered)."""
    gateway.expect_log(r"AIP01208")
    email = new_email("xl-garbage")
    up.next(raw=raw)
    r = httpx.post(gateway.url("/v1/chat/completions"), headers=auth(email),
                   json={"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]},
                   timeout=10)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_answer_unheld"
    c = oai(gateway, email).chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    assert c.choices[0].message.content == "This is a fake reply."


@pytest.fixture(scope="module")
def mixed(store, upstream):
    """xl-model served first by Anthropic (translated for a chat client),
    then by OpenAI (native): the same fake upstream behind both, under
    their own prefixes, so its records tell which one answered."""
    base = upstream.base
    conf = """
AIProxyProvider xa "%(base)s/xa/v1" api=anthropic key=env:ANTHROPIC_API_KEY
AIProxyProvider xo "%(base)s/xo/v1" api=openai key=env:OPENAI_API_KEY
AIProxyPrice xl-model input=1.00 output=2.00 max_output=1000
AIProxyModel xl-model xa xo
""" % {"base": base}
    with Gateway(store, upstream, extra_conf=conf) as g:
        yield g


def test_failover_from_translated_to_native(mixed, up):
    mixed.expect_log(r"AIP01310", r"AIP01601")
    email = new_email("xl-fo")
    up.next(status=500, path="/xa/")
    raw = oai(mixed, email).chat.completions.with_raw_response.create(
        model="xl-model", messages=[{"role": "user", "content": "fail me over"}])
    assert raw.parse().choices[0].message.content == "This is a fake reply."
    paths = [r["path"] for r in up.requests()]
    assert paths == ["/xa/v1/messages", "/xo/v1/chat/completions"]
    doc = wait_docs(mixed, email)[0]
    assert doc["provider"] == "xo"
    assert doc["cost"] == 3 * 1_000_000 + 5 * 2_000_000      # charged once
    assert raw.headers["cost"] == usd(doc["cost"])
    # And the other way: for an Anthropic client xa is native; its key now
    # rests, so the translated target serves.
    up.reset()
    email = new_email("xl-fo2")
    m = ant(mixed, email).messages.create(
        model="xl-model", max_tokens=20,
        messages=[{"role": "user", "content": "fail me over"}])
    assert m.content[0].text == "This is a fake reply."
    assert [r["path"] for r in up.requests()] == ["/xo/v1/chat/completions"]
    assert wait_docs(mixed, email)[0]["provider"] == "xo"
