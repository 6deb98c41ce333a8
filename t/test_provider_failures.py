"""A provider refusing the server's key (401/403), limiting it (429) or
failing (5xx) is visible to ops: one warning per key and minute in the
error log at the shipped `warn` level (never the key), counters per provider
and key in /api/stats, and /health naming the provider degraded once a key
fails three times in a row."""
import re

import httpx
import openai
import pytest

from conftest import PROVIDER_KEY, make_token
from helpers import auth, stats

# The subject: a failing key's warning, once a minute.
pytestmark = pytest.mark.expect_log(r"AIP01310", r"AIP01601")

MSG = [{"role": "user", "content": "hi"}]


def chat(g, email="pf@example.com"):
    return httpx.post(g.url("/openai/v1/chat/completions"), headers=auth(email),
                      json={"model": "gpt-4o-mini", "messages": MSG}, timeout=30)


def health(g):
    r = httpx.get(g.url("/health"), timeout=10)
    return r.status_code, r.json()


@pytest.fixture
def warn_gw(make_gateway):
    # The shipped level: what ops see without turning anything up.
    return make_gateway(loglevel="warn").start()


@pytest.mark.parametrize("status", [401, 403, 429, 500])
def test_failing_key_is_logged_counted_and_named(warn_gw, up, status):
    g = warn_gw
    code, body = health(g)
    assert code == 200 and body["status"] == "ok", body
    up.next(status=status, count=3)
    for _ in range(3):
        r = chat(g)
        assert r.status_code >= 400, r.text
    log = g.error_log()
    lines = [l for l in log.splitlines() if "AIP01310" in l]
    # Once per key and minute, whatever the number of failures.
    assert len(lines) == 1, log
    assert ":warn]" in lines[0], lines[0]
    assert "provider openai key #1" in lines[0] and str(status) in lines[0], lines[0]
    assert PROVIDER_KEY not in log and PROVIDER_KEY[-12:] not in log

    s = stats(g)
    assert s["upstream_errors"] == 3, s
    assert s["provider_errors"]["openai"] == [
        {"key": 1, "errors": 3, "in_a_row": 3, "last_status": status}], s
    assert s["provider_errors"]["anthropic"][0]["errors"] == 0, s

    code, body = health(g)
    assert code == 200, body            # the gateway still answers
    assert body["status"] == "degraded" and body["degraded"] == ["openai"], body

    # One good answer and the key is well again; the count stays.
    assert chat(g).status_code == 200
    code, body = health(g)
    assert code == 200 and body["status"] == "ok" and "degraded" not in body, body
    s = stats(g)["provider_errors"]["openai"][0]
    assert s["in_a_row"] == 0 and s["errors"] == 3, s


def test_dead_key_through_the_sdk_is_a_502_and_not_the_students_fault(warn_gw, up):
    up.next(status=401, count=2)
    client = openai.OpenAI(base_url=warn_gw.openai_base, api_key=make_token("pf@example.com"),
                           max_retries=0, timeout=20)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert e.value.status_code == 502
    assert re.search(r"AIP01310: provider openai key #1 is failing: answered 401",
                     warn_gw.error_log())
    assert stats(warn_gw)["provider_errors"]["openai"][0]["errors"] == 2
    # Two in a row: not yet degraded.
    assert health(warn_gw)[1]["status"] == "ok"
