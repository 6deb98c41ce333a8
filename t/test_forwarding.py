"""Forwarding: what the provider receives, and what the client gets back,
through the OpenAI SDK and curl."""
import json

import openai
import pytest

from conftest import PROVIDER_KEY, make_token, curl

CHAT = "/openai/v1/chat/completions"
ALLOWED_MODELS = {"gpt-4o-mini", "text-embedding-3-small"}


# ---------------------------------------------------------------- helpers

def assert_openai_error(status, headers, body, expected):
    assert status == expected, body
    assert headers.get("content-type", "").startswith("application/json"), headers
    err = json.loads(body)["error"]
    for field in ("message", "type", "code"):
        assert isinstance(err.get(field), str) and err[field], err
    return err


def sdk(gateway, token, **kw):
    return openai.OpenAI(base_url=gateway.openai_base, api_key=token, max_retries=0,
                         timeout=20, **kw)


@pytest.fixture
def tok():
    return make_token("fwd@example.com")


def only_request(up):
    recs = up.requests()
    assert len(recs) == 1, recs
    return recs[0]


# ---------------------------------------------------------------- credentials

def test_credentials_replaced_sdk(gateway, up, tok):
    client = sdk(gateway, tok, organization="org-client", project="proj-client",
                 default_headers={"api-key": "client-azure-key",
                                  "x-api-key": "client-x-key",
                                  "Cookie": "session=client-cookie"})
    client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "hi"}])
    sent = only_request(up)
    h = sent["headers"]
    assert h["authorization"] == "Bearer " + PROVIDER_KEY
    for gone in ("api-key", "x-api-key", "openai-organization", "openai-project",
                 "cookie"):
        assert gone not in h, (gone, h)
    assert tok not in json.dumps(sent)
    assert sent["method"] == "POST"
    assert sent["path"] == "/v1/chat/completions"


def test_credentials_replaced_curl(gateway, up, tok):
    status, _, body = curl(gateway, CHAT, tok,
                           body={"model": "gpt-4o-mini",
                                 "messages": [{"role": "user", "content": "hi"}]},
                           headers=["api-key: client-azure-key",
                                    "OpenAI-Organization: org-client",
                                    "x-api-key: client-x-key"])
    assert status == 200, body
    h = only_request(up)["headers"]
    assert h["authorization"] == "Bearer " + PROVIDER_KEY
    for gone in ("api-key", "x-api-key", "openai-organization"):
        assert gone not in h, (gone, h)
    assert tok not in json.dumps(h)


def test_duplicate_authorization_headers(gateway, up, tok):
    """Two Authorization headers: never forwarded alongside the server's key."""
    status, headers, body = curl(gateway, CHAT, tok,
                                 body={"model": "gpt-4o-mini", "messages": []},
                                 headers=["Authorization: Bearer other"])
    recs = up.requests()
    if status == 200:
        assert recs[0]["headers"]["authorization"] == "Bearer " + PROVIDER_KEY
    else:
        assert_openai_error(status, headers, body, 401)
        assert recs == []


# ---------------------------------------------------------------- bodies

def test_body_bytes_identical(gateway, up, tok):
    # Odd spacing, key order, escapes and non-ASCII: nothing may be re-encoded
    # (a body that names its output limit needs no change to be bounded).
    raw = ('{ "messages" : [ {"content":"h\\u00e9llo  w\\u00f6rld \\n \u2603 \U0001F600",'
           ' "role":"user"} ],\n\t"model":"gpt-4o-mini", "temperature": 0.50,'
           ' "n":1 , "max_tokens": 50, "extra": {"b":2,"a":1} }').encode("utf-8")
    status, _, body = curl(gateway, CHAT, tok, body=raw)
    assert status == 200, body
    sent = only_request(up)
    assert sent["body"].encode("utf-8") == raw
    assert sent["headers"]["content-length"] == str(len(raw))


def test_body_bytes_identical_sdk(gateway, up, tok):
    client = sdk(gateway, tok)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "caf\u00e9 \u2603"}],
        temperature=0.25, user="someone", max_completion_tokens=100)
    sent = only_request(up)
    assert sent["body"].encode("utf-8") == raw.http_request.content


def test_large_body_has_content_length(gateway, up, tok):
    text = " ".join("word%d" % i for i in range(15000))
    raw = json.dumps({"model": "gpt-4o-mini", "max_tokens": 100,
                      "messages": [{"role": "user", "content": text}]}).encode()
    assert len(raw) > 100 * 1024
    status, _, body = curl(gateway, CHAT, tok, body=raw)
    assert status == 200, body
    sent = only_request(up)
    assert sent["headers"]["content-length"] == str(len(raw))
    assert "transfer-encoding" not in sent["headers"]
    assert sent["body"].encode() == raw


def test_large_body_sdk(gateway, up, tok):
    text = "lorem " * 20000
    reply = sdk(gateway, tok).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert reply.usage.prompt_tokens == 20000
    sent = only_request(up)
    assert "transfer-encoding" not in sent["headers"]
    assert int(sent["headers"]["content-length"]) == len(sent["body"].encode())


@pytest.mark.parametrize("size", [200, 100 * 1024])
def test_chunked_client_body(gateway, up, tok, size):
    text = "x " * (size // 2)
    raw = json.dumps({"model": "gpt-4o-mini", "max_tokens": 100,
                      "messages": [{"role": "user", "content": text}]}).encode()
    status, _, body = curl(gateway, CHAT, tok, body=raw,
                           headers=["Transfer-Encoding: chunked"])
    assert status == 200, body
    sent = only_request(up)
    assert sent["body"].encode() == raw
    assert sent["headers"]["content-length"] == str(len(raw))
    assert "transfer-encoding" not in sent["headers"]


def test_expect_100_continue(gateway, up, tok):
    raw = json.dumps({"model": "gpt-4o-mini", "max_tokens": 100,
                      "messages": [{"role": "user", "content": "y " * 2000}]}).encode()
    status, _, body = curl(gateway, CHAT, tok, body=raw, headers=["Expect: 100-continue"])
    assert status == 200, body
    sent = only_request(up)
    assert sent["body"].encode() == raw
    assert "expect" not in sent["headers"]


# ---------------------------------------------------------------- endpoints

def test_embeddings_sdk(gateway, up, tok):
    res = sdk(gateway, tok).embeddings.create(model="text-embedding-3-small",
                                              input=["hello world", "bye"])
    assert len(res.data) == 2 and len(res.data[0].embedding) > 0
    sent = only_request(up)
    assert sent["path"] == "/v1/embeddings"
    assert sent["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_embeddings_curl(gateway, up, tok):
    status, headers, body = curl(gateway, "/openai/v1/embeddings", tok,
                                 body={"model": "text-embedding-3-small", "input": "hi"})
    assert status == 200, body
    assert json.loads(body)["object"] == "list"
    assert only_request(up)["path"] == "/v1/embeddings"


def test_models_lists_only_allowed_sdk(gateway, up, tok):
    ids = {m.id for m in sdk(gateway, tok).models.list()}
    assert ids == ALLOWED_MODELS
    sent = only_request(up)
    assert sent["method"] == "GET" and sent["path"] == "/v1/models"
    assert sent["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_models_lists_only_allowed_curl(gateway, up, tok):
    status, headers, body = curl(gateway, "/openai/v1/models", tok)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["object"] == "list"
    assert {m["id"] for m in doc["data"]} == ALLOWED_MODELS
    # The length announced is the length of the filtered body.
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body)


def test_models_subset_when_upstream_lacks_one(make_gateway, up, tok):
    """The list is the provider's, filtered, not the configuration's. A
    gateway of its own: the session's may have cached the list."""
    gw = make_gateway().start()
    up._call("POST", "/__control/models", {"models": ["gpt-4o-mini", "o3-mini"]})
    ids = {m.id for m in sdk(gw, tok).models.list()}
    assert ids == {"gpt-4o-mini"}


@pytest.mark.parametrize("path", ["/openai/v1/files", "/openai/v1/nope",
                                  "/openai/v1/", "/openai/v1/chat",
                                  "/openai/v1/chat/completions/x",
                                  "/openai/v1/../v1/files"])
def test_unknown_path_404(gateway, up, tok, path):
    status, headers, body = curl(gateway, path, tok, method="POST",
                                 body={"model": "gpt-4o-mini"}, args=["--path-as-is"])
    assert_openai_error(status, headers, body, 404)
    status, headers, body = curl(gateway, path, tok, args=["--path-as-is"])
    assert_openai_error(status, headers, body, 404)
    assert up.requests() == []


def test_unknown_path_404_sdk(gateway, up, tok):
    with pytest.raises(openai.NotFoundError) as e:
        sdk(gateway, tok).files.list()
    assert e.value.status_code == 404
    assert e.value.response.json()["error"]["code"]
    assert up.requests() == []


def test_unknown_path_404_without_token(gateway, up):
    status, headers, body = curl(gateway, "/openai/v1/nope")
    assert status in (401, 404)
    assert_openai_error(status, headers, body, status)
    assert up.requests() == []


@pytest.mark.parametrize("method,path", [("GET", CHAT), ("PUT", CHAT), ("DELETE", CHAT),
                                         ("GET", "/openai/v1/embeddings"),
                                         ("POST", "/openai/v1/models")])
def test_wrong_method_405(gateway, up, tok, method, path):
    status, headers, body = curl(gateway, path, tok, method=method)
    assert_openai_error(status, headers, body, 405)
    assert up.requests() == []


def test_query_string_still_works(gateway, up, tok):
    client = sdk(gateway, tok, default_query={"api-version": "2024-01-01"})
    reply = client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "This is a fake reply."
    status, _, body = curl(gateway, CHAT + "?foo=bar&x=1", tok,
                           body={"model": "gpt-4o-mini",
                                 "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, body
    status, _, body = curl(gateway, "/openai/v1/models?limit=5", tok)
    assert status == 200, body
    assert {m["id"] for m in json.loads(body)["data"]} == ALLOWED_MODELS
    recs = up.requests()
    assert [r["path"] for r in recs] == ["/v1/chat/completions", "/v1/chat/completions",
                                         "/v1/models"]


# ---------------------------------------------------------------- upstream errors

SDK_ERRORS = {400: openai.BadRequestError, 404: openai.NotFoundError,
              429: openai.RateLimitError, 500: openai.InternalServerError}


@pytest.mark.parametrize("status", sorted(SDK_ERRORS))
@pytest.mark.expect_log(r"AIP01310")
def test_upstream_error_passes_through_sdk(gateway, up, tok, status):
    with pytest.raises(SDK_ERRORS[status]) as e:
        sdk(gateway, tok).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Fake-Status": str(status)})
    assert e.value.status_code == status
    assert "fake_upstream forced %d" % status in e.value.body["message"]
    assert len(up.requests()) == 1


@pytest.mark.parametrize("status", [400, 404, 500])
@pytest.mark.expect_log(r"AIP01310")
def test_upstream_error_passes_through_curl(gateway, up, tok, status):
    up.next(status=status)
    got, headers, body = curl(gateway, CHAT, tok,
                              body={"model": "gpt-4o-mini",
                                    "messages": [{"role": "user", "content": "hi"}]})
    assert got == status
    assert headers["content-type"].startswith("application/json")
    err = json.loads(body)["error"]
    assert "fake_upstream forced %d" % status in err["message"]
    assert len(up.requests()) == 1


@pytest.mark.expect_log(r"AIP01310")
def test_upstream_error_on_embeddings_sdk(gateway, up, tok):
    up.next(status=500, path="/embeddings")
    with pytest.raises(openai.InternalServerError):
        sdk(gateway, tok).embeddings.create(model="text-embedding-3-small", input="x")
    assert len(up.requests()) == 1


def test_encoded_request_body_refused(gateway, up, tok):
    status, headers, body = curl(gateway, CHAT, tok, body=b"\x1f\x8b\x08\x00garbage",
                                 headers=["Content-Encoding: gzip"])
    assert_openai_error(status, headers, body, 415)
    assert up.requests() == []


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_limit_413(gateway, up, tok, chunked):
    huge = b'{"model":"gpt-4o-mini","x":"' + b"a" * (8 * 1024 * 1024) + b'"}'
    status, headers, body = curl(gateway, CHAT, tok, body=huge,
                                 headers=["Transfer-Encoding: chunked"] if chunked else [])
    assert_openai_error(status, headers, body, 413)
    assert up.requests() == []


def test_encoded_slash_is_json_404(gateway, up, tok):
    """chat%2Fcompletions below the route: still an unknown endpoint, so a
    JSON 404 like any other (httpd's core refuses encoded slashes with its
    HTML page before the module runs unless told otherwise)."""
    status, headers, body = curl(gateway, "/openai/v1/chat%2Fcompletions", tok,
                                 body={"model": "gpt-4o-mini", "messages": []})
    assert status == 404
    assert headers.get("content-type", "").startswith("application/json"), body[:200]
    assert up.requests() == []
