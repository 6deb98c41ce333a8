"""Monthly caps: which cap applies (the user's own, then the domain's, then
AIProxyMonthlyCap), where the line is, and what a refused request gets."""
import datetime
import json
import os
import re
import secrets
from decimal import Decimal

import httpx
import openai
import pytest

from conftest import ROOT, make_token
from helpers import auth

CHAT = "/openai/v1/chat/completions"
PICO_PER_USD = Decimal(10) ** 12


def conf_words(name, path):
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words and words[0] == name:
                yield words[1:]


def default_cap():
    """AIProxyMonthlyCap from t/conf/aiproxy.conf, in pico-dollars."""
    [[usd]] = list(conf_words("AIProxyMonthlyCap", "t/conf/aiproxy.conf"))
    return int(Decimal(usd) * PICO_PER_USD)


def price(model):
    """pico-dollars per token from conf/prices.conf (USD per 1M tokens)."""
    for words in conf_words("AIProxyPrice", "conf/prices.conf"):
        if words[0] == model:
            p = {k: int(Decimal(v) * 10 ** 6) for k, v in
                 (w.split("=", 1) for w in words[1:])}
            p.setdefault("cached", p["input"])
            p.setdefault("cache_write", 0)
            p.setdefault("output", 0)
            return p
    raise KeyError(model)


def pico(usd):
    return int(Decimal(usd) * PICO_PER_USD)


def usd(pico_amount):
    s = format(Decimal(pico_amount) / PICO_PER_USD, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def new_domain():
    return "caps-%s.test" % secrets.token_hex(4)


def my_cap(gw, email):
    r = httpx.get(gw.url("/usage/me"), headers=auth(email), timeout=30)
    assert r.status_code == 200, r.text
    return pico(r.json()["cap"])


def chat(gw, email, body=None, headers=None):
    h = auth(email)
    h.update(headers or {})
    if body is None:
        body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 50,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
    return httpx.post(gw.url(CHAT), content=body, headers=h, timeout=30)


def seconds_to_next_month(now):
    first = datetime.datetime(now.year + (now.month == 12), now.month % 12 + 1, 1,
                              tzinfo=datetime.timezone.utc)
    return (first - now).total_seconds()


def test_cap_resolution_email_then_domain_then_default(gateway, up):
    domain = new_domain()
    alice, bob, carol, dave = ("%s@%s" % (n, domain) for n in ("alice", "bob", "carol", "dave"))

    # Nothing set: the configured default.
    assert my_cap(gateway, alice) == default_cap()

    # The domain's cap applies to everyone in it without a cap of their own.
    gateway.set_cap("@" + domain, 5 * 10 ** 12)
    assert my_cap(gateway, alice) == my_cap(gateway, bob) == 5 * 10 ** 12

    # A user's own cap beats the domain's, larger or smaller.
    gateway.set_cap(alice, 7 * 10 ** 12)
    gateway.set_cap(bob, 0)
    assert my_cap(gateway, alice) == 7 * 10 ** 12
    assert my_cap(gateway, bob) == 0
    assert my_cap(gateway, carol) == 5 * 10 ** 12

    # A user document without a cap does not hide the domain's.
    gateway.db().users.update_one({"_id": dave}, {"$set": {"note": "no cap"}},
                                  upsert=True)
    assert my_cap(gateway, dave) == 5 * 10 ** 12

    # And admission uses the same cap: a domain cap of 0 stops the domain,
    # except a user with a cap of their own.
    gateway.set_cap("@" + domain, 0)
    assert chat(gateway, carol).status_code == 429
    assert chat(gateway, dave).status_code == 429
    assert chat(gateway, alice).status_code == 200
    assert chat(gateway, bob).status_code == 429
    # Another domain is untouched.
    assert chat(gateway, "erin@%s" % new_domain()).status_code == 200
    assert len(up.requests()) == 2


def test_cap_boundary_is_inclusive(gateway, up):
    """Admitted while spent + reserved + this reservation <= cap."""
    p = price("gpt-4o-mini")
    max_tokens = 100
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    hold = len(body) * max(p["input"], p["cache_write"]) + max_tokens * p["output"]
    email = "edge-%s@example.com" % secrets.token_hex(4)

    gateway.set_cap(email, hold - 1)
    r = chat(gateway, email, body)
    assert r.status_code == 429
    assert up.requests() == []
    # Nothing used yet: the message says the request's maximum is the
    # problem, not that the month is spent.
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    assert r.json()["error"]["message"] == (
        "On %s you used $0 of $%s. This request may cost up to $%s, more than "
        "the $%s left; a lower max_tokens or a shorter input costs less."
        % (month, usd(hold - 1), usd(hold), usd(hold - 1)))
    gateway.set_cap(email, hold)
    r = chat(gateway, email, body)
    assert r.status_code == 200, r.text
    assert len(up.requests()) == 1


@pytest.mark.expect_log(r"AIP01202")
def test_over_cap_is_429_with_explanation(gateway, up):
    email = "over-%s@example.com" % secrets.token_hex(4)
    usage = {"X-Fake-Usage": json.dumps({"prompt_tokens": 10000, "completion_tokens": 2000})}
    r = chat(gateway, email, headers=usage)
    assert r.status_code == 200, r.text
    spent = pico(r.headers["cost"])
    assert spent > 0
    cap = spent // 2
    gateway.set_cap(email, cap)
    up.reset()

    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(email),
                           max_retries=0)
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                                       messages=[{"role": "user", "content": "hi"}])
    now = datetime.datetime.now(datetime.timezone.utc)
    resp = ei.value.response
    assert resp.status_code == 429
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == "insufficient_quota"
    m = re.match(r"On (\d{4}-\d{2}) you used \$([0-9.]+), exceeding \$([0-9.]+)\.",
                 err["message"])
    assert m, err["message"]
    assert m.group(1) == now.strftime("%Y-%m")
    assert pico(m.group(2)) == spent and m.group(2) == usd(spent)
    assert pico(m.group(3)) == cap and m.group(3) == usd(cap)

    # Retry when the next month starts (UTC).
    retry_after = int(resp.headers["Retry-After"])
    assert abs(retry_after - seconds_to_next_month(now)) <= 5, retry_after

    # The month so far, and nothing charged for the refusal.
    assert resp.headers["cost"] == "0"
    assert pico(resp.headers["monthlyCost"]) == spent
    assert resp.headers["monthlyRequests"] == "1"
    assert up.requests() == []
    doc = gateway.db().months.find_one({"email": email})
    assert doc["requests"] == 1 and doc["spent"] == spent
    assert doc["reserved"] == 0 and doc["holds"] == {}
    assert gateway.db().requests.count_documents({"email": email}) == 1


def test_default_cap_applies_when_nothing_is_set(gateway, up):
    """Spending already past AIProxyMonthlyCap (recorded directly) is refused."""
    from bson import Int64
    email = "default-%s@example.com" % secrets.token_hex(4)
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    spent = default_cap() + 1
    gateway.db().months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(spent), "reserved": Int64(0), "load": Int64(spent),
        "requests": Int64(3), "holds": {}})
    r = chat(gateway, email)
    assert r.status_code == 429
    msg = r.json()["error"]["message"]
    assert msg.startswith("On %s you used $%s, exceeding $%s." % (month, usd(spent),
                                                                   usd(default_cap()))), msg
    assert r.headers["monthlyRequests"] == "3"
    assert up.requests() == []
