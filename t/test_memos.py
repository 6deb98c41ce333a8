"""What each child remembers between requests: verified tokens (their
expiry still checked every time) and users' settings for
AIProxyUserCacheTTL seconds, dropped at once when this server's admin API
changes a cap or revokes."""
import time

import httpx
import openai
import pytest
from bson import Int64

from conftest import ADMIN, Gateway, make_token

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

TTL = 4


@pytest.fixture(scope="module")
def gw(store, upstream):
    # One child, so every request meets the same memos.
    with Gateway(store, upstream, extra_conf="AIProxyUserCacheTTL %d\n"
                 "AIProxyTokenLeeway 0\n"
                 "StartServers 1\nMinSpareThreads 1\nMaxSpareThreads 64\n"
                 "ServerLimit 1\nThreadsPerChild 32\nMaxRequestWorkers 32\n" % TTL) as g:
        yield g


def client(gw, token):
    return openai.OpenAI(api_key=token, base_url=gw.url("/openai/v1"), max_retries=0)


def ask(gw, token):
    return client(gw, token).chat.completions.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}])


def admin(gw, method, path, body):
    r = httpx.request(method, gw.url(path), json=body, timeout=30,
                      headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 200, r.text
    return r.json()


def test_remembered_token_still_expires(gw, up):
    # AIProxyTokenLeeway 0: the token is good for about two more seconds.
    tok = make_token("expiring@example.com", exp=int(time.time()) + 2)
    assert ask(gw, tok).choices[0].message.content
    assert ask(gw, tok).choices[0].message.content   # remembered
    time.sleep(3.1)
    with pytest.raises(openai.AuthenticationError) as e:
        ask(gw, tok)
    assert e.value.body["code"] == "invalid_api_key"
    assert "expired" in e.value.body["message"]


def test_remembered_token_is_only_that_token(gw, up):
    good = make_token("forger@example.com")
    assert ask(gw, good).choices[0].message.content
    # Same header and claims, another signature: not a hit.
    head, claims, sig = good.split(".")
    forged = ".".join([head, claims, ("A" if sig[0] != "A" else "B") + sig[1:]])
    with pytest.raises(openai.AuthenticationError):
        ask(gw, forged)


def test_store_edits_apply_after_the_ttl(gw, up):
    who = "memo-cap@example.com"
    tok = make_token(who)
    assert ask(gw, tok).choices[0].message.content
    # A cap of one pico-dollar, written behind the gateway's back (as
    # aiproxy-admin or another server would): the child still holds the
    # default cap until its memory of the user is TTL seconds old.
    changed = time.monotonic()
    gw.db().users.update_one({"_id": who}, {"$set": {"cap": Int64(1)}}, upsert=True)
    assert ask(gw, tok).choices[0].message.content
    while time.monotonic() - changed < TTL + 1:
        time.sleep(0.5)
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw, tok)
    assert e.value.body["code"] == "insufficient_quota"


def test_admin_api_changes_apply_at_once(gw, up):
    who = "memo-admin@example.com"
    tok = make_token(who, iat=int(time.time()) - 10)
    assert ask(gw, tok).choices[0].message.content
    admin(gw, "PUT", "/admin/api/caps", {"who": who, "cap": "0.000001"})
    with pytest.raises(openai.RateLimitError):
        ask(gw, tok)
    admin(gw, "PUT", "/admin/api/caps", {"who": who, "cap": None})
    assert ask(gw, tok).choices[0].message.content
    admin(gw, "POST", "/admin/api/revoke", {"email": who})
    with pytest.raises(openai.AuthenticationError) as e:
        ask(gw, tok)
    assert e.value.body["code"] == "token_revoked"


@pytest.mark.parametrize("directive,value", [
    ("AIProxyUserCacheTTL", "-1"), ("AIProxyUserCacheTTL", "5s"),
    ("AIProxyUserCacheTTL", "3601"), ("AIProxyTokenCache", "many"),
    ("AIProxyTokenCache", "-3"),
])
def test_bad_values_stop_httpd(make_gateway, directive, value):
    g = make_gateway("%s %s\n" % (directive, value))
    rc, out = g.configtest()
    assert rc != 0 and directive in out, out
