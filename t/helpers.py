"""Helpers the test files share: addresses, credentials, the admin's view
of a gateway, its request documents and the price of a chat. (The harness
itself, the gateway, store and upstream, is in conftest.py.)"""
import secrets
import time

import httpx

from conftest import ADMIN, PRICES, make_token


def new_email(prefix):
    """An address no other test uses, so its month starts at $0."""
    return "%s-%s@example.com" % (prefix, secrets.token_hex(4))


def auth(email):
    """The Authorization header of a fresh token for email."""
    return {"Authorization": "Bearer " + make_token(email)}


def stats(gw):
    """/api/stats as the admin sees it."""
    r = httpx.get(gw.url("/api/stats"), headers=auth(ADMIN), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_docs(gw, email, n=1, timeout=10):
    """The request documents of email, once there are at least n."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        docs = list(gw.db().requests.find({"email": email}))
        if len(docs) >= n:
            return docs
        time.sleep(0.05)
    raise AssertionError("%s: fewer than %d request documents" % (email, n))


def chat_cost(model, prompt, completion, cached=0):
    """A chat's price from conf/prices.conf, in pico-dollars; OpenAI counts
    cached tokens inside prompt_tokens."""
    p = PRICES[model]
    return ((prompt - cached) * p["input"] + cached * p["cached"]
            + completion * p["output"])
