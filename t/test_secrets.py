"""Secrets never leak: after successful and failing requests (SDK and curl)
at LogLevel debug, neither the provider key, the token secret nor any
bearer token used appears in the error log, the access log, a response
body or a response header."""
import time

import jwt  # noqa: F401  (for the warning filter)
import openai
import pytest

from conftest import ADMIN, ANTHROPIC_KEY, PROVIDER_KEY, TOKEN_SECRET, make_token, curl_raw

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

CHAT = "/openai/v1/chat/completions"
MSG = [{"role": "user", "content": "hello"}]


class Seen:
    """Everything the client saw, and every token it sent."""

    def __init__(self):
        self.tokens = []
        self.texts = []
        self.statuses = []

    def token(self, *a, **kw):
        t = make_token(*a, **kw)
        self.tokens.append(t)
        return t

    def raw(self, tok):
        self.tokens.append(tok)
        return tok

    def add_httpx(self, resp):
        self.statuses.append(resp.status_code)
        self.texts.append("\n".join("%s: %s" % kv for kv in resp.headers.items()))
        self.texts.append(resp.text)

    def add_curl(self, result):
        status, head, body = result
        self.statuses.append(status)
        self.texts += [head, body]
        return status

    def sdk(self, gateway, tok):
        return openai.OpenAI(base_url=gateway.openai_base, api_key=tok, max_retries=0,
                             timeout=20)

    def sdk_call(self, fn, expect=None):
        """Runs an SDK call; keeps the response whether it succeeds or raises."""
        try:
            raw = fn()
        except openai.APIStatusError as e:
            self.add_httpx(e.response)
            if expect is not None:
                assert isinstance(e, expect), e
            return e
        self.add_httpx(raw.http_response)
        raw.parse()
        assert expect is None, "expected %s" % expect
        return raw


@pytest.fixture(scope="module")
def traffic(gateway, upstream):
    upstream.reset()
    s = Seen()
    good = s.token("secrets@example.com")
    client = s.sdk(gateway, good)

    # Successes: chat, stream, embeddings, models, through the SDK and curl.
    s.sdk_call(lambda: client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG))
    s.sdk_call(lambda: client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello"))
    s.sdk_call(lambda: client.models.with_raw_response.list())
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MSG, stream=True) as resp:
        text = "".join(resp.iter_text())
        s.statuses.append(resp.http_response.status_code)
        s.texts += ["\n".join("%s: %s" % kv for kv in resp.headers.items()), text]
    assert s.add_curl(curl_text(gateway, CHAT, good, body={"model": "gpt-4o-mini",
                                                      "messages": MSG})) == 200
    assert s.add_curl(curl_text(gateway, "/openai/v1/models", good)) == 200

    # 401: a token signed with another secret, an expired one, an HS512 one,
    # a flipped signature, a mangled one; with the SDK and curl.
    for bad in (s.token("secrets@example.com", secret="x" + TOKEN_SECRET),
                s.token("secrets@example.com", exp=int(time.time()) - 3600),
                s.token("secrets@example.com", alg="HS512"),
                s.raw(good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")),
                s.raw(good + ".extra"),
                s.raw("Zm9v" + good)):
        s.sdk_call(lambda: s.sdk(gateway, bad).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSG), openai.AuthenticationError)
        assert s.add_curl(curl_text(gateway, CHAT, bad, body={"model": "gpt-4o-mini",
                                                         "messages": MSG})) == 401
    # Someone pasting the server's own key or secret as their token.
    for leaked in (PROVIDER_KEY, TOKEN_SECRET):
        assert s.add_curl(curl_text(gateway, CHAT, leaked, body={"model": "gpt-4o-mini",
                                                            "messages": MSG})) == 401
    assert s.add_curl(curl_text(gateway, CHAT, body={"model": "gpt-4o-mini",
                                                "messages": MSG},
                           headers=["Authorization: Basic " + good])) == 401

    # 404 and 405.
    s.sdk_call(lambda: client.files.with_raw_response.list(), openai.NotFoundError)
    assert s.add_curl(curl_text(gateway, "/openai/v1/nope", good)) == 404
    assert s.add_curl(curl_text(gateway, CHAT, good, method="GET")) == 405

    # 403: a model that is not allowed.
    s.sdk_call(lambda: client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG), openai.PermissionDeniedError)
    assert s.add_curl(curl_text(gateway, CHAT, good, body={"model": "o3-mini",
                                                      "messages": MSG})) == 403

    # 400: a body that is not JSON, or has no model.
    assert s.add_curl(curl_text(gateway, CHAT, good, body=b'{"model": "gpt-4o-mini", ')) == 400
    assert s.add_curl(curl_text(gateway, CHAT, good, body={"messages": MSG})) == 400

    # The upstream fails: 500 and 401 from the provider (a bad server key).
    s.sdk_call(lambda: client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, extra_headers={"X-Fake-Status": "500"}),
        openai.InternalServerError)
    upstream.next(status=500)
    assert s.add_curl(curl_text(gateway, CHAT, good, body={"model": "gpt-4o-mini",
                                                      "messages": MSG})) == 500
    # The provider refusing the server's key is the gateway's problem, not
    # the student's: 502, never a 401 that blames the student's token.
    upstream.next(status=401)
    assert s.add_curl(curl_text(gateway, CHAT, good, body={"model": "gpt-4o-mini",
                                                      "messages": MSG})) == 502

    # The gateway's own pages, as a student and as an admin: whatever they
    # answer, it goes through the same sweep.
    admin = s.token(ADMIN)
    for path in ("/usage", "/health", "/targets", "/api/stats", "/token"):
        for who in (good, admin, None):
            s.add_curl(curl_text(gateway, path, who))

    time.sleep(0.3)  # let the log lines of the last request land
    return s


def secrets_to_find(seen):
    found = {"PROVIDER_KEY": PROVIDER_KEY, "TOKEN_SECRET": TOKEN_SECRET,
             "ANTHROPIC_KEY": ANTHROPIC_KEY}
    for i, t in enumerate(seen.tokens):
        found["token %d" % i] = t
    return found


def leaks(text, seen):
    return [name for name, value in secrets_to_find(seen).items() if value in text]


@pytest.mark.expect_log(r"AIP01310")
def test_traffic_had_every_kind_of_answer(traffic):
    assert {200, 400, 401, 403, 404, 405, 500} <= set(traffic.statuses)


def test_gateway_logs_at_debug(gateway):
    assert gateway.env["AIPROXY_LOGLEVEL"] == "debug"
    assert ":debug]" in gateway.error_log()


def test_no_secret_in_error_log(gateway, traffic):
    assert leaks(gateway.error_log(), traffic) == []


def test_no_secret_in_access_log(gateway, traffic):
    log = gateway.access_log()
    assert "secrets@example.com" in log  # it does log this traffic
    assert leaks(log, traffic) == []


def test_no_secret_in_responses(traffic):
    for text in traffic.texts:
        assert leaks(text, traffic) == [], text


def test_secrets_are_not_partially_echoed(gateway, traffic):
    """Not even a prefix long enough to matter (first 16 characters of the
    random part of each key)."""
    logs = gateway.error_log() + gateway.access_log() + "\n".join(traffic.texts)
    for value in (PROVIDER_KEY[len("sk-upstream-"):], TOKEN_SECRET[len("tsecret-"):]):
        assert value[:16] not in logs


def curl_text(gateway, path, *args, **kw):
    """(status, raw header text, body text), with curl."""
    status, head, body = curl_raw(gateway, path, *args, **kw)
    return status, head, body.decode("utf-8", "replace")
