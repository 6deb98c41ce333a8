"""What identifies a student stays here: the provider receives only the
request headers its API needs (plus any the site lists in
AIProxyUpstreamHeaders), never the client's address, host names, user agent
or other headers, whatever mod_proxy would add by default."""
import anthropic
import openai

from conftest import ANTHROPIC_KEY, PROVIDER_KEY, curl, make_token

MSG = [{"role": "user", "content": "hi"}]
# What the providers' APIs need, and what mod_proxy and HTTP add themselves.
NEEDED = {"host", "content-type", "content-length", "accept", "authorization",
          "x-api-key", "anthropic-version", "anthropic-beta", "openai-beta",
          "idempotency-key", "user-agent", "connection"}
IDENTIFYING = {"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Host": "student.example",
               "X-Forwarded-Server": "laptop", "Forwarded": "for=10.1.2.3",
               "Via": "1.1 student-proxy", "X-Real-IP": "10.1.2.3",
               "Referer": "https://student.example/", "Origin": "https://student.example",
               "X-Student": "s123", "Accept-Language": "de-CH"}


def only_request(up):
    recs = up.requests()
    assert len(recs) == 1, recs
    return recs[0]["headers"]


def assert_nothing_identifying(h):
    unexpected = {k for k in h if k not in NEEDED and not k.startswith("x-fake-")}
    assert not unexpected, ("headers the provider should not see", unexpected, h)
    assert h.get("user-agent") == "mod_aiproxy", h
    # The client's address (the tests' client is 127.0.0.1) in no header but
    # Host, which names the provider.
    assert not [k for k, v in h.items() if "127.0.0.1" in v and k != "host"], h


def test_openai_sdk_sends_only_what_the_api_needs(gateway, up):
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token("hdr@example.com"),
                           max_retries=0, timeout=20, default_headers=IDENTIFYING)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                   extra_headers={"Idempotency-Key": "idem-1",
                                                  "OpenAI-Beta": "assistants=v2"})
    h = only_request(up)
    assert_nothing_identifying(h)
    # What the API needs still goes: the provider's key, the body's type,
    # and the headers that change what the API does.
    assert h["authorization"] == "Bearer " + PROVIDER_KEY
    assert h["content-type"].startswith("application/json")
    assert h["idempotency-key"] == "idem-1" and h["openai-beta"] == "assistants=v2"
    # The SDK's own fingerprint (x-stainless-*: OS, runtime, version) stays.
    assert not [k for k in h if k.startswith("x-stainless")], h


def test_anthropic_sdk_sends_only_what_the_api_needs(gateway, up):
    client = anthropic.Anthropic(base_url=gateway.url("/anthropic"),
                                 api_key=make_token("hdr@example.com"), max_retries=0,
                                 timeout=20, default_headers=IDENTIFYING)
    client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MSG)
    h = only_request(up)
    assert_nothing_identifying(h)
    assert h["x-api-key"] == ANTHROPIC_KEY
    assert h["anthropic-version"]


def test_curl_stream_sends_only_what_the_api_needs(gateway, up):
    status, _, body = curl(gateway, "/openai/v1/chat/completions",
                           make_token("hdr@example.com"),
                           body={"model": "gpt-4o-mini", "messages": MSG, "stream": True},
                           headers=["%s: %s" % kv for kv in IDENTIFYING.items()])
    assert status == 200 and b"data: [DONE]" in body, body
    assert_nothing_identifying(only_request(up))


def test_a_site_can_pass_headers_on(make_gateway, up):
    """AIProxyUpstreamHeaders turns a header on, mod_proxy's X-Forwarded-For
    included: the site's choice, written in its configuration."""
    g = make_gateway("AIProxyUpstreamHeaders User-Agent X-Forwarded-For X-Course-*\n").start()
    client = openai.OpenAI(base_url=g.openai_base, api_key=make_token("hdr@example.com"),
                           max_retries=0, timeout=20,
                           default_headers={"X-Course-Id": "cs101", "X-Student": "s1"})
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    h = only_request(up)
    assert h["x-course-id"] == "cs101" and "x-student" not in h
    assert h["user-agent"].startswith("OpenAI/Python"), h
    assert h["x-forwarded-for"] == "127.0.0.1", h


def test_bad_header_name_stops_start_up(make_gateway):
    rc, out = make_gateway("AIProxyUpstreamHeaders 'X Bad'\n").configtest()
    assert rc != 0 and "AIProxyUpstreamHeaders" in out, out
