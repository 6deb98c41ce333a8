"""Routing with two providers: by path (/proxy/{provider}/v1/...) and by the
body's model (/v1/... with AIProxyModel, including a model the provider
knows by another name). Each provider is its own fake upstream process, so
every test can tell which one a request reached and with which key."""
import json
import secrets

import anthropic
import httpx
import openai
import pytest

from conftest import (ANTHROPIC_KEY, PRICES, PROVIDER_KEY, Gateway, Upstream,
                      make_token, usd)
from helpers import auth, new_email, wait_docs

SECOND_KEY = "sk-second-" + secrets.token_hex(16)
# A public model served by `second` under another name, at its own price.
PUBLIC_MODEL = "routed-model"
UPSTREAM_NAME = "upstream-name"
PUBLIC_PRICE = {"input": 1_000_000, "output": 2_000_000}   # $1 and $2 per 1M
MSG = [{"role": "user", "content": "route me please"}]


@pytest.fixture(scope="module")
def second():
    with Upstream("second") as u:
        yield u


@pytest.fixture(scope="module")
def routed(store, upstream, second):
    base = second.base + "/v1"
    conf = """
AIProxyProvider second "%(base)s" api=openai key=env:SECOND_KEY
<Proxy "%(base)s">
    ProxySet keepalive=On timeout=300 connectiontimeout=5
</Proxy>
AIProxyPrice %(model)s input=1.00 output=2.00 max_output=1000
AIProxyModel %(model)s second=%(alias)s
# Every provider by path, every priced model: what the tests below reach.
<Location /proxy>
    AIProxyRoute path openai second anthropic
    AIProxyModels *
</Location>
# Both APIs' endpoints listed for a route of providers of either API.
<Location /listed>
    AIProxyRoute path openai anthropic
    AIProxyEndpoints chat/completions messages messages/count_tokens moderations
    AIProxyModels *
</Location>
""" % {"base": base, "model": PUBLIC_MODEL, "alias": UPSTREAM_NAME}
    with Gateway(store, upstream, extra_conf=conf, env={"SECOND_KEY": SECOND_KEY}) as g:
        yield g


@pytest.fixture
def ups(upstream, second):
    upstream.reset()
    second.reset()
    return upstream, second


# ------------------------------------------------------------ by path

def test_path_route_reaches_second_provider_with_its_key(routed, ups):
    first, second = ups
    email = new_email("path2")
    client = openai.OpenAI(base_url=routed.url("/proxy/second/v1"),
                           api_key=make_token(email))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                           messages=MSG)
    assert raw.parse().choices[0].message.content == "This is a fake reply."
    seen = second.requests()
    assert len(seen) == 1 and first.requests() == []
    assert seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["headers"]["authorization"] == "Bearer " + SECOND_KEY
    assert json.loads(seen[0]["body"])["model"] == "gpt-4o-mini"
    doc = wait_docs(routed, email)[0]
    assert doc["provider"] == "second" and doc["model"] == "gpt-4o-mini"
    # 3 prompt words, 5 reply words at gpt-4o-mini's price
    p = PRICES["gpt-4o-mini"]
    assert doc["cost"] == 3 * p["input"] + 5 * p["output"]
    assert raw.headers["cost"] == usd(doc["cost"])


def test_path_route_reaches_first_provider_with_its_key(routed, ups):
    first, second = ups
    r = httpx.post(routed.url("/proxy/openai/v1/embeddings"), headers=auth(new_email("path1")),
                   json={"model": "text-embedding-3-small", "input": "one two"}, timeout=30)
    assert r.status_code == 200, r.text
    assert second.requests() == []
    seen = first.requests()
    assert len(seen) == 1 and seen[0]["path"] == "/v1/embeddings"
    assert seen[0]["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_path_route_anthropic_provider(routed, ups):
    first, _ = ups
    email = new_email("path-claude")
    client = anthropic.Anthropic(base_url=routed.url("/proxy/anthropic"),
                                 api_key=make_token(email))
    msg = client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSG)
    assert msg.content[0].text == "This is a fake reply."
    seen = first.requests()[-1]
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert wait_docs(routed, email)[0]["provider"] == "anthropic"


def test_path_route_models_list_comes_from_that_provider(routed, ups):
    first, second = ups
    r = httpx.get(routed.url("/proxy/second/v1/models"), headers=auth(new_email("pm")),
                  timeout=30)
    assert r.status_code == 200, r.text
    assert [q["path"] for q in second.requests()] == ["/v1/models"]
    ids = {m["id"] for m in r.json()["data"]}
    # AIProxyModels *: priced models are kept.
    assert ids and ids <= set(PRICES)


def test_unknown_provider_is_404_json(routed, ups):
    first, second = ups
    email = new_email("nope")
    r = httpx.post(routed.url("/proxy/nosuch/v1/chat/completions"), headers=auth(email),
                   json={"model": "gpt-4o-mini", "messages": MSG}, timeout=30)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == "unknown_provider" and "nosuch" in err["message"]
    client = openai.OpenAI(base_url=routed.url("/proxy/nosuch/v1"), api_key=make_token(email))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert first.requests() == [] and second.requests() == []
    assert routed.db().requests.count_documents({"email": email}) == 0


def test_endpoint_of_another_api_on_a_provider_is_404(routed, ups):
    """/proxy/second/v1/messages: second speaks OpenAI's API."""
    first, second = ups
    r = httpx.post(routed.url("/proxy/second/v1/messages"), headers=auth(new_email("api")),
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MSG},
                   timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    assert second.requests() == []


def test_listed_endpoint_of_another_api_is_404(routed, ups):
    """AIProxyEndpoints listing both APIs' endpoints does not open one API's
    path at the other's provider: a chat/completions stream at Anthropic
    (whose events the Anthropic reader would not know: output unmetered)
    and a free count_tokens at OpenAI are both 404, and nothing goes out."""
    first, _ = ups
    for path, body in (
            ("/listed/anthropic/v1/chat/completions",
             {"model": "claude-haiku-4-5", "max_tokens": 4000, "stream": True,
              "messages": MSG}),
            ("/listed/openai/v1/messages/count_tokens",
             {"model": "gpt-4o-mini", "messages": MSG}),
            ("/listed/anthropic/v1/moderations", {"input": "hi"})):
        r = httpx.post(routed.url(path), headers=auth(new_email("listed")), json=body,
                       timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", path
    assert first.requests() == []
    r = httpx.post(routed.url("/listed/openai/v1/chat/completions"),
                   headers=auth(new_email("listed")),
                   json={"model": "gpt-4o-mini", "max_tokens": 5, "messages": MSG}, timeout=30)
    assert r.status_code == 200, r.text


# ------------------------------------------------------------ by model

def test_model_route_alias_reaches_second_and_is_billed_at_public_price(routed, ups):
    first, second = ups
    email = new_email("bymodel")
    client = openai.OpenAI(base_url=routed.url("/v1"), api_key=make_token(email))
    usage = json.dumps({"prompt_tokens": 1000, "completion_tokens": 100})
    raw = client.chat.completions.with_raw_response.create(
        model=PUBLIC_MODEL, messages=MSG, extra_headers={"X-Fake-Usage": usage})
    assert raw.parse().choices[0].message.content == "This is a fake reply."
    assert first.requests() == []
    seen = second.requests()
    assert len(seen) == 1
    assert seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["headers"]["authorization"] == "Bearer " + SECOND_KEY
    sent = json.loads(seen[0]["body"])
    assert sent["model"] == UPSTREAM_NAME
    assert sent["messages"] == MSG
    expected = 1000 * PUBLIC_PRICE["input"] + 100 * PUBLIC_PRICE["output"]
    assert raw.headers["cost"] == usd(expected)
    doc = wait_docs(routed, email)[0]
    assert doc["model"] == PUBLIC_MODEL
    assert doc["provider"] == "second"
    assert doc["cost"] == expected
    assert doc["input_tokens"] == 1000 and doc["output_tokens"] == 100
    m = routed.db().months.find_one({"email": email})
    assert m["spent"] == expected and m["requests"] == 1 and m["reserved"] == 0


def test_model_route_stream_alias(routed, ups):
    _, second = ups
    email = new_email("bymodel-stream")
    client = openai.OpenAI(base_url=routed.url("/v1"), api_key=make_token(email))
    chunks = list(client.chat.completions.create(model=PUBLIC_MODEL, messages=MSG,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == "This is a fake reply."
    sent = json.loads(second.requests()[-1]["body"])
    assert sent["model"] == UPSTREAM_NAME and sent["stream"] is True
    doc = wait_docs(routed, email)[0]
    assert doc["model"] == PUBLIC_MODEL and doc["provider"] == "second"
    assert doc["cost"] == 3 * PUBLIC_PRICE["input"] + 5 * PUBLIC_PRICE["output"]


def test_model_route_default_models_reach_first_provider(routed, ups):
    first, second = ups
    email = new_email("bymodel1")
    client = openai.OpenAI(base_url=routed.url("/v1"), api_key=make_token(email))
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    client.embeddings.create(model="text-embedding-3-small", input="a b c")
    assert second.requests() == []
    seen = first.requests()
    assert [q["path"] for q in seen] == ["/v1/chat/completions", "/v1/embeddings"]
    assert all(q["headers"]["authorization"] == "Bearer " + PROVIDER_KEY for q in seen)
    assert json.loads(seen[0]["body"])["model"] == "gpt-4o-mini"
    docs = wait_docs(routed, email, 2)
    assert {d["provider"] for d in docs} == {"openai"}


def test_model_route_anthropic_sdk(routed, ups):
    first, second = ups
    email = new_email("bymodel-claude")
    client = anthropic.Anthropic(base_url=routed.url(""), api_key=make_token(email))
    msg = client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSG)
    assert msg.content[0].text == "This is a fake reply."
    seen = first.requests()[-1]
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in seen["headers"]
    assert wait_docs(routed, email)[0]["provider"] == "anthropic"


def test_v1_models_lists_the_mapped_models(routed, ups):
    first, second = ups
    client = openai.OpenAI(base_url=routed.url("/v1"), api_key=make_token(new_email("ls")))
    models = client.models.list().data
    owners = {m.id: m.owned_by for m in models}
    # t/conf/aiproxy.conf maps these; the test adds PUBLIC_MODEL.
    assert owners == {"gpt-4o-mini": "openai", "text-embedding-3-small": "openai",
                      "omni-moderation-latest": "openai",
                      "claude-haiku-4-5": "anthropic", PUBLIC_MODEL: "second"}
    # Listed by the gateway itself: no provider asked.
    assert first.requests() == [] and second.requests() == []


def test_v1_unmapped_model_is_403(routed, ups):
    first, second = ups
    email = new_email("unmapped")
    # gpt-4o has a price but no AIProxyModel line.
    r = httpx.post(routed.url("/v1/chat/completions"), headers=auth(email),
                   json={"model": "gpt-4o", "messages": MSG}, timeout=30)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "model_not_allowed"
    client = openai.OpenAI(base_url=routed.url("/v1"), api_key=make_token(email))
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert first.requests() == [] and second.requests() == []
    assert routed.db().requests.count_documents({"email": email}) == 0
    assert routed.db().months.count_documents({"email": email, "requests": {"$gt": 0}}) == 0


def test_v1_model_on_endpoint_of_another_api_is_403(routed, ups):
    """claude-haiku-4-5 is mapped only to an Anthropic provider: nobody
    serves it on responses (chat/completions is translated, see
    test_translation.py)."""
    first, second = ups
    r = httpx.post(routed.url("/v1/responses"), headers=auth(new_email("cross")),
                   json={"model": "claude-haiku-4-5", "input": "hi"}, timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert first.requests() == [] and second.requests() == []


def test_v1_unknown_endpoint_is_404(routed, ups):
    r = httpx.post(routed.url("/v1/nothing/here"), headers=auth(new_email("ep")),
                   json={"model": "gpt-4o-mini"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
