"""GET /usage (administrators: every user's months, filtered, sorted, paged)
and GET /usage/me (any valid token: one's own months, cap and what is left).

A gateway with a database of its own, so the expected rows are exactly the
ones this file writes."""
import datetime
import json
import random
from decimal import Decimal

import httpx
import pytest
from bson import Int64

from conftest import ADMIN, make_token

PICO_PER_USD = Decimal(10) ** 12
MONTHS = ["2026-09", "2026-10", "2026-11"]
EMAILS = ["u%02d@%s" % (i, d) for i, d in
          zip(range(12), ["usage.test", "other.test", "usage.test"] * 4)]
BULK_MONTH = "2025-01"
BULK = 1005


def pico(usd):
    return int(Decimal(usd) * PICO_PER_USD)


def usd(p):
    s = format(Decimal(p) / PICO_PER_USD, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def month_doc(email, month, spent, requests, reserved=0):
    return {"_id": "%s|%s" % (email, month), "email": email, "month": month,
            "spent": Int64(spent), "reserved": Int64(reserved),
            "load": Int64(spent + reserved), "requests": Int64(requests), "holds": {}}


@pytest.fixture(scope="module")
def usage_gw(store, upstream):
    from conftest import Gateway
    gw = Gateway(store, upstream).start()
    rng = random.Random(7)
    spents = rng.sample(range(1, 10 ** 9), len(EMAILS) * len(MONTHS))
    docs = []
    for i, (email, month) in enumerate((e, m) for e in EMAILS for m in MONTHS):
        # Requests repeat across users: ties exercise the _id tie-break.
        docs.append(month_doc(email, month, spents[i] * 1000, rng.randint(1, 5)))
    docs += [month_doc("bulk%04d@bulk.test" % i, BULK_MONTH, i, 1) for i in range(BULK)]
    gw.db().months.insert_many(docs)
    gw.docs = docs
    yield gw
    gw.stop()


def get(gw, path, email=ADMIN, params=None, token=True):
    headers = {"Authorization": "Bearer " + make_token(email)} if token else {}
    return httpx.get(gw.url(path), params=params, headers=headers, timeout=30)


def expected_rows(docs, sort="monthlyCost", month=None, email=None):
    field = {"monthlyCost": "spent", "monthlyRequests": "requests",
             "month": "month", "email": "email"}[sort]
    rows = [d for d in docs if (month is None or d["month"] == month) and
            (email is None or d["email"] == email)]
    rows.sort(key=lambda d: d["_id"])                 # ties: _id ascending
    rows.sort(key=lambda d: d[field], reverse=True)   # stable: keeps that order
    return [(d["email"], d["month"], usd(d["spent"]), int(d["requests"])) for d in rows]


def got_rows(r):
    assert r.status_code == 200, r.text
    return [(d["email"], d["month"], d["monthlyCost"], d["monthlyRequests"])
            for d in r.json()["data"]]


def assert_400(r):
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["message"]


# ------------------------------------------------------------------ access

def test_usage_needs_a_token(usage_gw):
    for path in ("/usage", "/usage/me"):
        r = get(usage_gw, path, token=False)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(usage_gw.url("/usage"), headers={"Authorization": "Bearer nonsense"},
                  timeout=30)
    assert r.status_code == 401


def test_usage_is_for_admins(usage_gw):
    r = get(usage_gw, "/usage", email="student@example.com")
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["message"]
    # Filtering to oneself does not make a student an administrator.
    r = get(usage_gw, "/usage", email="u00@usage.test", params={"email": "u00@usage.test"})
    assert r.status_code == 403


# ------------------------------------------------------------------ listing

def test_defaults(usage_gw):
    r = get(usage_gw, "/usage")
    body = r.json()
    assert body["skip"] == 0 and body["limit"] == 1000 and body["sort"] == "monthlyCost"
    rows = got_rows(r)
    assert len(rows) == 1000            # more exist: the default limit is 1000
    assert rows == expected_rows(usage_gw.docs)[:1000]
    for d in body["data"]:
        assert isinstance(d["monthlyRequests"], int)
        assert isinstance(d["monthlyCost"], str)


def test_skip_and_limit_page_through(usage_gw):
    want = expected_rows(usage_gw.docs)
    assert got_rows(get(usage_gw, "/usage", params={"limit": 1000})) == want[:1000]
    assert got_rows(get(usage_gw, "/usage", params={"skip": 1000})) == want[1000:]
    pages = []
    for skip in range(0, 40, 7):
        pages += got_rows(get(usage_gw, "/usage", params={"skip": skip, "limit": 7}))
    assert pages == want[:42]
    assert got_rows(get(usage_gw, "/usage", params={"skip": 5000})) == []


def test_month_and_email_filters(usage_gw):
    docs = usage_gw.docs
    for month in MONTHS:
        assert got_rows(get(usage_gw, "/usage", params={"month": month})) == \
            expected_rows(docs, month=month)
    assert got_rows(get(usage_gw, "/usage", params={"email": "u03@usage.test"})) == \
        expected_rows(docs, email="u03@usage.test")
    assert got_rows(get(usage_gw, "/usage", params={"email": "u03@usage.test",
                                                    "month": "2026-10"})) == \
        expected_rows(docs, email="u03@usage.test", month="2026-10")
    assert got_rows(get(usage_gw, "/usage", params={"email": "nobody@usage.test"})) == []
    # Emails are kept lower-cased; the filter is read as /admin/api/daily reads it.
    assert got_rows(get(usage_gw, "/usage", params={"email": "U03@Usage.TEST"})) == \
        expected_rows(docs, email="u03@usage.test")
    assert got_rows(get(usage_gw, "/usage", params={"month": "2020-01"})) == []


@pytest.mark.parametrize("sort", ["monthlyCost", "monthlyRequests", "month", "email"])
def test_sort_descending(usage_gw, sort):
    r = get(usage_gw, "/usage", params={"sort": sort, "limit": 1000})
    assert r.json()["sort"] == sort
    assert got_rows(r) == expected_rows(usage_gw.docs, sort=sort)[:1000]
    # Within one month, so the bulk rows do not crowd the page.
    r = get(usage_gw, "/usage", params={"sort": sort, "month": "2026-10"})
    assert got_rows(r) == expected_rows(usage_gw.docs, sort=sort, month="2026-10")


@pytest.mark.parametrize("query", [
    "limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=", "skip=-1", "skip=1.5",
    "month=2026-13", "month=2026-00", "month=2026-1", "month=26-11", "sort=password",
    "sort=spent", "sort=", "email=", "email=nope", "email=@usage.test", "foo=1", "limit=10&foo=1",
])
def test_bad_parameters_are_400(usage_gw, query):
    r = httpx.get(usage_gw.url("/usage?" + query), timeout=30,
                  headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert_400(r)


def test_real_requests_show_up(usage_gw, up):
    email = "real@usage.test"
    h = {"Authorization": "Bearer " + make_token(email),
         "X-Fake-Usage": json.dumps({"prompt_tokens": 321, "completion_tokens": 12})}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    costs = []
    for _ in range(2):
        r = httpx.post(usage_gw.url("/openai/v1/chat/completions"), json=body,
                       headers=h, timeout=30)
        assert r.status_code == 200, r.text
        costs.append(pico(r.headers["cost"]))
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    rows = got_rows(get(usage_gw, "/usage", params={"email": email}))
    assert rows == [(email, month, usd(sum(costs)), 2)]
    usage_gw.db().months.delete_one({"email": email})


# ------------------------------------------------------------------ /usage/me

def test_usage_me(usage_gw):
    gw = usage_gw
    email = "me-user@usage.test"
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    cap = 3 * 10 ** 12
    gw.set_cap(email, cap)
    mine = [month_doc(email, month, 1234567, 4, reserved=1000),
            month_doc(email, "2026-01", 999, 1)]
    gw.db().months.insert_many(mine)
    try:
        r = get(gw, "/usage/me", email=email)
        assert r.status_code == 200, r.text
        me = r.json()
        assert me["email"] == email and me["month"] == month
        assert pico(me["cap"]) == cap
        # What is left counts money on hold as used.
        assert pico(me["remaining"]) == cap - 1234567 - 1000
        rows = [(d["email"], d["month"], d["monthlyCost"], d["monthlyRequests"])
                for d in me["months"]]
        assert rows == [(email, month, usd(1234567), 4), (email, "2026-01", usd(999), 1)]

        # Someone else sees only their own months; an admin too.
        r = get(gw, "/usage/me", email="u01@other.test")
        assert r.status_code == 200
        assert {d["email"] for d in r.json()["months"]} == {"u01@other.test"}
        assert len(r.json()["months"]) == len(MONTHS)
        r = get(gw, "/usage/me", email=ADMIN)
        assert r.status_code == 200 and r.json()["months"] == []

        # Over the cap: nothing remains (never negative).
        gw.set_cap(email, 1000)
        assert get(gw, "/usage/me", email=email).json()["remaining"] == "0"
    finally:
        gw.db().months.delete_many({"email": email})
