"""Nothing crosses the boundary that should not: the provider's key stays
out of what httpd logs, the provider's account headers stay out of what
students see, and a client that trickles its request cannot hold a worker."""
import socket
import time

import anthropic
import httpx
import openai

from conftest import ANTHROPIC_KEY, PROVIDER_KEY, make_token

PRIVATE = ("openai-organization", "openai-project", "x-ratelimit-remaining-requests",
           "set-cookie", "anthropic-organization-id",
           "anthropic-ratelimit-requests-remaining")
MSG = [{"role": "user", "content": "hello"}]


def test_provider_account_headers_do_not_reach_students(gateway, up):
    token = make_token("exposed@example.com")
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=token)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                           messages=MSG)
    assert raw.headers["x-request-id"]          # what SDKs read stays
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, stream=True)
    list(stream.parse())
    a = anthropic.Anthropic(base_url=gateway.url("/anthropic"), api_key=token)
    araw = a.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=10,
                                               messages=MSG)
    assert araw.headers["request-id"]
    # The fake did send them.
    sent = httpx.post(up.base + "/v1/chat/completions",
                      json={"model": "gpt-4o-mini", "messages": MSG}, timeout=10)
    assert "openai-organization" in sent.headers
    for r in (raw, stream, araw):
        for h in PRIVATE:
            assert h not in r.headers, (h, dict(r.headers))


def test_provider_key_is_not_in_what_httpd_logs(make_gateway, up):
    gw = make_gateway('LogFormat "%{Authorization}i|%{x-api-key}i|%{api-key}i" keys\n'
                      'CustomLog "${AIPROXY_VAR}/keys.log" keys\n').start()
    token = make_token("logged@example.com")
    openai.OpenAI(base_url=gw.openai_base, api_key=token).chat.completions.create(
        model="gpt-4o-mini", messages=MSG)
    anthropic.Anthropic(base_url=gw.url("/anthropic"), api_key=token).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MSG)
    gw.stop()
    with open(gw.var + "/keys.log") as f:
        logged = f.read()
    assert logged.count("\n") >= 2
    assert PROVIDER_KEY not in logged and ANTHROPIC_KEY not in logged


def test_trickling_client_is_dropped_and_others_served(gateway, up):
    """mod_reqtimeout (conf/httpd.conf): 10 s for the request's headers."""
    slow = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
        s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t0 = time.monotonic()
    r = httpx.post(gateway.url("/openai/v1/chat/completions"),
                   headers={"Authorization": "Bearer " + make_token("normal@example.com")},
                   json={"model": "gpt-4o-mini", "messages": MSG}, timeout=30)
    assert r.status_code == 200 and time.monotonic() - t0 < 5
    for s in slow:
        data = s.recv(4096)          # httpd answers 408 and closes, or just closes
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
        s.close()
    assert time.monotonic() - t0 < 25
