"""Authorization: only an HS256 token signed with the server's secret, with a
valid email and within its time limits, reaches the provider. Every refusal
is a 401 in OpenAI's error shape and never touches the upstream."""
import base64
import hashlib
import hmac
import json
import subprocess
import time

import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import PROVIDER_KEY, TOKEN_SECRET, make_token, curl

# HS512 with our 56-byte secret is the point, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

CHAT = "/openai/v1/chat/completions"
CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------- helpers

def b64url(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    elif isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra):
    c = {"email": "auth@example.com", "iat": int(time.time()) - 1}
    c.update(extra)
    return c


def hand_made(header, payload, secret=TOKEN_SECRET, signature=None):
    """A compact JWT with any header, HMAC-SHA256 signed unless told."""
    signing_input = b64url(header) + "." + b64url(payload)
    if signature is None:
        signature = b64url(hmac.new(secret.encode(), signing_input.encode(),
                                    hashlib.sha256).digest())
    return signing_input + "." + signature


def assert_openai_error(status, headers, body, expected=401):
    assert status == expected, body
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    err = doc["error"]
    for field in ("message", "type", "code"):
        assert isinstance(err.get(field), str) and err[field], doc
    return err


def sdk(gateway, api_key, **kw):
    return openai.OpenAI(base_url=gateway.openai_base, api_key=api_key,
                         max_retries=0, timeout=20, **kw)


def chat(client):
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- tokens refused

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _flip_signature(tok):
    head, payload, sig = tok.split(".")
    first = "B" if sig[0] != "B" else "C"
    return ".".join([head, payload, first + sig[1:]])


def _big_token():
    # Properly signed, but about 100 KB long.
    return make_token("auth@example.com", pad="x" * 75000)


BAD_TOKENS = {
    "alg-none-unsigned": lambda: hand_made({"alg": "none", "typ": "JWT"}, claims(), signature=""),
    "alg-NONE-unsigned": lambda: hand_made({"alg": "NONE", "typ": "JWT"}, claims(), signature=""),
    "alg-None-unsigned": lambda: hand_made({"alg": "None", "typ": "JWT"}, claims(), signature=""),
    "alg-none-with-hmac": lambda: hand_made({"alg": "none", "typ": "JWT"}, claims()),
    "alg-none-no-typ": lambda: hand_made({"alg": "none"}, claims(), signature=""),
    "hs384-same-secret": lambda: make_token("auth@example.com", alg="HS384"),
    "hs512-same-secret": lambda: make_token("auth@example.com", alg="HS512"),
    "rs256-real-key": lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "rs256-header-hmac-signed": lambda: hand_made({"alg": "RS256", "typ": "JWT"}, claims()),
    "no-alg-header": lambda: hand_made({"typ": "JWT"}, claims()),
    "other-secret": lambda: make_token("auth@example.com", secret="not-" + TOKEN_SECRET),
    "flipped-signature": lambda: _flip_signature(make_token("auth@example.com")),
    "signature-dropped": lambda: make_token("auth@example.com").rsplit(".", 1)[0] + ".",
    "two-segments": lambda: ".".join(make_token("auth@example.com").split(".")[:2]),
    "four-segments": lambda: make_token("auth@example.com") + ".AAAA",
    "four-segments-empty": lambda: make_token("auth@example.com") + ".",
    "expired": lambda: make_token("auth@example.com", exp=int(time.time()) - 120),
    "expired-long-ago": lambda: make_token("auth@example.com", exp=1000000000),
    "exp-not-a-number": lambda: make_token("auth@example.com", exp="tomorrow"),
    "nbf-future": lambda: make_token("auth@example.com", nbf=int(time.time()) + 300),
    "nbf-not-a-number": lambda: make_token("auth@example.com", nbf="soon"),
    "missing-email": lambda: make_token(None),
    "email-number": lambda: make_token(12345),
    "email-list": lambda: make_token(["auth@example.com"]),
    "email-object": lambda: make_token({"email": "auth@example.com"}),
    "email-true": lambda: make_token(True),
    "email-empty": lambda: make_token(""),
    "email-no-at": lambda: make_token("auth.example.com"),
    "email-with-space": lambda: make_token("a b@example.com"),
    "garbage": lambda: "this-is-not-a-token",
    "garbage-three-segments": lambda: "abc.def.ghi",
    "garbage-bad-chars": lambda: "eyJhbGciOiJIUzI1NiJ9.e30=.sig+/",
    "garbage-json-header": lambda: b64url(b"{not json") + "." + b64url(claims()) + ".c2ln",
    "payload-not-object": lambda: hand_made({"alg": "HS256", "typ": "JWT"}, ["auth@example.com"]),
    "empty-segments": lambda: "..",
    "100kb": _big_token,
}


@pytest.fixture(scope="module")
def good_token():
    return make_token("auth-ok@example.com")


def test_valid_token_reaches_upstream_sdk(gateway, up, good_token):
    reply = chat(sdk(gateway, good_token))
    assert reply.choices[0].message.content == "This is a fake reply."
    sent = up.requests()
    assert len(sent) == 1
    assert sent[0]["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_valid_token_reaches_upstream_curl(gateway, up, good_token):
    status, headers, body = curl(gateway, CHAT, good_token, body=CHAT_BODY)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "This is a fake reply."
    assert len(up.requests()) == 1


def test_bearer_scheme_is_case_insensitive(gateway, up, good_token):
    status, _, body = curl(gateway, CHAT, auth_header="bearer " + good_token, body=CHAT_BODY)
    assert status == 200, body
    assert len(up.requests()) == 1


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_token_refused_curl(gateway, up, name):
    tok = BAD_TOKENS[name]()
    status, headers, body = curl(gateway, CHAT, tok, body=CHAT_BODY)
    assert_openai_error(status, headers, body, 401)
    assert up.requests() == []


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_token_refused_sdk(gateway, up, name):
    with pytest.raises(openai.AuthenticationError) as e:
        chat(sdk(gateway, BAD_TOKENS[name]()))
    assert e.value.status_code == 401
    assert e.value.response.headers["content-type"].startswith("application/json")
    err = e.value.response.json()["error"]
    assert err["message"] and err["type"] and err["code"]
    assert up.requests() == []


def test_no_authorization_header(gateway, up):
    status, headers, body = curl(gateway, CHAT, body=CHAT_BODY)
    err = assert_openai_error(status, headers, body, 401)
    assert "Bearer" in err["message"]
    assert up.requests() == []


def test_no_authorization_header_sdk(gateway, up):
    # The SDK sends no Authorization header only when told to omit it.
    client = sdk(gateway, "unused")
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"Authorization": openai.Omit()})
    assert e.value.status_code == 401
    assert "authorization" not in {k.lower() for k in e.value.request.headers}
    assert up.requests() == []


def test_empty_bearer(gateway, up):
    status, headers, body = curl(gateway, CHAT, auth_header="Bearer ", body=CHAT_BODY)
    assert_openai_error(status, headers, body, 401)
    assert up.requests() == []


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", "Bearer:"])
def test_wrong_scheme(gateway, up, good_token, scheme):
    value = base64.b64encode(b"auth@example.com:" + good_token.encode()).decode() \
        if scheme == "Basic" else good_token
    status, headers, body = curl(gateway, CHAT, auth_header=scheme + " " + value,
                                 body=CHAT_BODY)
    assert_openai_error(status, headers, body, 401)
    assert up.requests() == []


def test_basic_auth_curl_user(gateway, up, good_token):
    """curl -u, what a user trying Basic auth would type."""
    p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-u", "auth@example.com:" + good_token,
                        "-H", "Content-Type: application/json", "-d", json.dumps(CHAT_BODY),
                        gateway.url(CHAT)], capture_output=True, text=True, timeout=30)
    body, status = p.stdout.rsplit("\n", 1)
    assert status == "401"
    assert json.loads(body)["error"]["code"]
    assert up.requests() == []


def test_basic_scheme_sdk(gateway, up, good_token):
    client = sdk(gateway, good_token, default_headers={
        "Authorization": "Basic " + base64.b64encode(b"u:" + good_token.encode()).decode()})
    with pytest.raises(openai.AuthenticationError) as e:
        chat(client)
    assert e.value.status_code == 401
    assert up.requests() == []


def test_x_api_key_is_not_a_credential_for_openai(gateway, up, good_token):
    status, headers, body = curl(gateway, CHAT, headers=["x-api-key: " + good_token],
                                 body=CHAT_BODY)
    assert_openai_error(status, headers, body, 401)
    assert up.requests() == []


def test_expired_within_leeway_accepted(gateway, up):
    tok = make_token("auth-leeway@example.com", exp=int(time.time()) - 30)
    reply = chat(sdk(gateway, tok))
    assert reply.choices[0].message.content
    status, _, body = curl(gateway, CHAT, tok, body=CHAT_BODY)
    assert status == 200, body
    assert len(up.requests()) == 2


def test_nbf_within_leeway_accepted(gateway, up):
    tok = make_token("auth-leeway@example.com", nbf=int(time.time()) + 30)
    status, _, body = curl(gateway, CHAT, tok, body=CHAT_BODY)
    assert status == 200, body
    assert len(up.requests()) == 1


def test_future_exp_accepted(gateway, up):
    tok = make_token("auth-exp@example.com", exp=int(time.time()) + 3600)
    assert chat(sdk(gateway, tok)).choices[0].message.content
    assert len(up.requests()) == 1


def test_expired_message_says_expired(gateway, up):
    tok = make_token("auth@example.com", exp=int(time.time()) - 120)
    status, headers, body = curl(gateway, CHAT, tok, body=CHAT_BODY)
    err = assert_openai_error(status, headers, body, 401)
    assert "expired" in err["message"]


def test_refused_on_models_and_embeddings(gateway, up):
    """The token check guards every endpoint, not only chat."""
    bad = make_token("auth@example.com", alg="HS512")
    status, headers, body = curl(gateway, "/openai/v1/models", bad)
    assert_openai_error(status, headers, body, 401)
    status, headers, body = curl(gateway, "/openai/v1/embeddings", bad,
                                 body={"model": "text-embedding-3-small", "input": "x"})
    assert_openai_error(status, headers, body, 401)
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, bad).models.list()
    assert up.requests() == []


def test_keepalive_connection_survives_refusal(gateway, up, good_token):
    """A 401 answered before the body was read must not corrupt the next
    request on the same keep-alive connection."""
    shared = openai.DefaultHttpxClient()
    client = sdk(gateway, "bad-token", http_client=shared)
    good = sdk(gateway, good_token, http_client=shared)
    for _ in range(3):
        with pytest.raises(openai.AuthenticationError):
            chat(client)
        assert chat(good).choices[0].message.content == "This is a fake reply."
    assert len(up.requests()) == 3


def _token_of_length(n):
    """A properly signed token exactly n characters long."""
    for pad in range(0, n):
        # A header field of its own to pad with: a kid must name a secret.
        for pad_header in ("", "k", "kk"):
            headers = {"pad": pad_header} if pad_header else None
            t = jwt.encode(claims(pad="p" * pad), TOKEN_SECRET, algorithm="HS256",
                           headers=headers)
            if len(t) == n:
                return t
            if len(t) > n + 4:
                break
    raise AssertionError("no token of length %d" % n)


def test_token_length_limit(gateway, up):
    """AIProxyTokenMaxLength defaults to 8192: that many is fine, one more is not."""
    ok = _token_of_length(8192)
    status, _, body = curl(gateway, CHAT, ok, body=CHAT_BODY)
    assert status == 200, body
    too_long = _token_of_length(8193)
    status, headers, body = curl(gateway, CHAT, too_long, body=CHAT_BODY)
    err = assert_openai_error(status, headers, body, 401)
    assert "long" in err["message"]
    assert len(up.requests()) == 1


def test_refused_before_reading_a_large_body(gateway, up, good_token):
    """A bad token with a 100 KB body (curl sends Expect: 100-continue):
    refused at once; the same connection then serves a good request."""
    big = json.dumps({"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": "z " * 50000}]})
    shared = openai.DefaultHttpxClient()
    bad = sdk(gateway, "not.a.token", http_client=shared)
    good = sdk(gateway, good_token, http_client=shared)
    t0 = time.time()
    status, headers, body = curl(gateway, CHAT, "bad", body=big)
    assert_openai_error(status, headers, body, 401)
    assert time.time() - t0 < 2
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="gpt-4o-mini",
                                        messages=[{"role": "user", "content": "z " * 50000}])
        assert chat(good).choices[0].message.content
    assert len(up.requests()) == 2
