"""The admin API (/admin/api/...): 401 without a token and 403 with a
non-admin one on every endpoint; caps for emails and @domains set and
cleared (USD decimal strings, never floats); revocation; usage; cost per
day; the caller's month."""
import datetime
import time

import httpx
import openai
import pytest
from bson import Int64

from conftest import ADMIN, make_token

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

PICO = 10 ** 12
ENDPOINTS = [
    ("GET", "/admin/api/usage", None),
    ("GET", "/admin/api/caps", None),
    ("PUT", "/admin/api/caps", {"who": "x@example.com", "cap": "1"}),
    ("POST", "/admin/api/caps", {"who": "x@example.com", "cap": "1"}),
    ("POST", "/admin/api/revoke", {"email": "x@example.com"}),
    ("GET", "/admin/api/daily", None),
    ("GET", "/admin/api/me", None),
    ("GET", "/admin/api/nonexistent", None),
]


def call(gw, method, path, token=None, body=None, **kw):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return httpx.request(method, gw.url(path), json=body, headers=headers, timeout=30, **kw)


def admin(gw, method, path, body=None, **kw):
    return call(gw, method, path, make_token(ADMIN), body, **kw)


def error_code(r):
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r.json()["error"]["code"]


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_401_without_token(gateway, method, path, body):
    r = call(gateway, method, path, None, body)
    assert r.status_code == 401, r.text
    assert error_code(r) == "invalid_api_key"
    r = call(gateway, method, path, make_token(ADMIN, secret="wrong-secret-0123456789"), body)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_403_with_non_admin_token(gateway, method, path, body):
    """Every role against every endpoint: t/test_roles.py. A student gets
    their own `me`, and an unknown endpoint is one for them too."""
    r = call(gateway, method, path, make_token("student@example.com"), body)
    if path.endswith("/me"):
        assert r.status_code == 200 and r.json()["role"] == "student", r.text
        return
    if path.endswith("/nonexistent"):
        assert r.status_code == 404 and error_code(r) == "unknown_url"
        return
    assert r.status_code == 403, r.text
    assert error_code(r) in ("not_admin",)


def test_revoked_admin_is_401(gateway):
    db = gateway.db()
    db.users.update_one({"_id": "admin2@example.com"}, {"$set": {"revoked_at": Int64(int(time.time()) + 5)}},
                        upsert=True)
    r = call(gateway, "GET", "/admin/api/me", make_token("admin2@example.com"))
    assert r.status_code in (401, 403)


def test_set_and_clear_cap_for_email(gateway):
    who = "cap-user@example.com"
    r = admin(gateway, "PUT", "/admin/api/caps", {"who": who, "cap": "1.50"})
    assert r.status_code == 200, r.text
    assert r.json() == {"who": who, "cap": "1.5"}
    doc = gateway.db().users.find_one({"_id": who})
    assert doc["cap"] == 15 * PICO // 10 and isinstance(doc["cap"], Int64)
    me = call(gateway, "GET", "/usage/me", make_token(who)).json()
    assert me["cap"] == "1.5"
    r = admin(gateway, "POST", "/admin/api/caps", {"who": who, "cap": None})
    assert r.status_code == 200, r.text
    assert r.json() == {"who": who, "cap": None}
    assert "cap" not in gateway.db().users.find_one({"_id": who})
    assert call(gateway, "GET", "/usage/me", make_token(who)).json()["cap"] == "2"


def test_domain_cap_and_email_override(gateway):
    assert admin(gateway, "PUT", "/admin/api/caps", {"who": "@capdomain.edu", "cap": "0.25"}).status_code == 200
    assert call(gateway, "GET", "/usage/me", make_token("a@capdomain.edu")).json()["cap"] == "0.25"
    assert admin(gateway, "PUT", "/admin/api/caps", {"who": "b@capdomain.edu", "cap": "3"}).status_code == 200
    assert call(gateway, "GET", "/usage/me", make_token("b@capdomain.edu")).json()["cap"] == "3"
    caps = admin(gateway, "GET", "/admin/api/caps").json()
    assert caps["default_cap"] == "2"
    rows = {row["who"]: row for row in caps["data"]}
    assert rows["@capdomain.edu"]["cap"] == "0.25"
    assert rows["b@capdomain.edu"] == {"who": "b@capdomain.edu", "cap": "3", "revoked_at": None}


def test_cap_set_through_api_is_enforced(gateway, up):
    who = "tight@example.com"
    assert admin(gateway, "PUT", "/admin/api/caps", {"who": who, "cap": "0.000001"}).status_code == 200
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token(who), max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("body,fragment", [
    ({"who": "x@example.com", "cap": 1.5}, "string"),
    ({"who": "x@example.com", "cap": 2}, "string"),
    ({"who": "x@example.com", "cap": "abc"}, "cap"),
    ({"who": "x@example.com", "cap": "-1"}, "cap"),
    ({"who": "x@example.com", "cap": "1e3"}, "cap"),
    ({"who": "x@example.com"}, "cap is required"),
    ({"who": "not-an-email", "cap": "1"}, "who"),
    ({"who": "a@b@c", "cap": "1"}, "who"),
    ({"who": "a b@c.com", "cap": "1"}, "who"),
    ({"cap": "1"}, "who"),
])
def test_bad_cap_requests(gateway, body, fragment):
    r = admin(gateway, "PUT", "/admin/api/caps", body)
    assert r.status_code == 400, r.text
    assert error_code(r) == "invalid_parameter"
    assert fragment in r.json()["error"]["message"]


def test_bad_json_bodies(gateway):
    r = httpx.put(gateway.url("/admin/api/caps"), content=b"{not json",
                  headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 400 and error_code(r) == "invalid_json"
    r = admin(gateway, "PUT", "/admin/api/caps", ["who", "cap"])
    assert r.status_code == 400 and error_code(r) == "invalid_json"
    r = httpx.put(gateway.url("/admin/api/caps"), content=b"{" + b" " * 70000 + b"}",
                  headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 413


def test_revoke(gateway):
    who = "revokee@example.com"
    old = make_token(who, iat=int(time.time()) - 10)
    assert call(gateway, "GET", "/usage/me", old).status_code == 200
    r = admin(gateway, "POST", "/admin/api/revoke", {"email": "Revokee@Example.com"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["email"] == who and abs(body["revoked_at"] - time.time()) < 5
    r = call(gateway, "GET", "/usage/me", old)
    assert r.status_code == 401 and error_code(r) == "token_revoked"
    rows = {row["who"]: row for row in admin(gateway, "GET", "/admin/api/caps").json()["data"]}
    assert rows[who]["revoked_at"] == body["revoked_at"]
    # Revoking again in the same second moves the line forward.
    again = admin(gateway, "POST", "/admin/api/revoke", {"email": who}).json()
    assert again["revoked_at"] >= body["revoked_at"] + 1


def test_revoke_bad_requests(gateway):
    assert admin(gateway, "POST", "/admin/api/revoke", {"email": "@example.com"}).status_code == 400
    assert admin(gateway, "POST", "/admin/api/revoke", {}).status_code == 400
    r = admin(gateway, "GET", "/admin/api/revoke")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_usage_matches_usage_endpoint(gateway, up):
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token("u1@example.com"))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}])
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    params = {"month": month, "email": "u1@example.com"}
    r = admin(gateway, "GET", "/admin/api/usage", params=params)
    assert r.status_code == 200, r.text
    assert r.json() == call(gateway, "GET", "/usage", make_token(ADMIN), params=params).json()
    row = r.json()["data"][0]
    assert row["email"] == "u1@example.com" and row["monthlyRequests"] == 1
    assert isinstance(row["monthlyCost"], str)
    assert admin(gateway, "GET", "/admin/api/usage", params={"sort": "bogus"}).status_code == 400


def insert_requests(db, email, month, days_costs):
    for i, (day, cost) in enumerate(days_costs):
        y, m = map(int, month.split("-"))
        db.requests.insert_one({
            "_id": "t-%s-%s-%d" % (email, month, i), "email": email, "month": month,
            "time": datetime.datetime(y, m, day, 12, i % 60, tzinfo=datetime.timezone.utc),
            "endpoint": "chat/completions", "model": "gpt-4o-mini", "provider": "openai",
            "input_tokens": Int64(1), "cached_tokens": Int64(0), "cache_write_tokens": Int64(0),
            "output_tokens": Int64(1), "cost": Int64(cost), "reserved": Int64(cost),
            "status": 200, "estimated": False})


def test_daily(gateway):
    db = gateway.db()
    insert_requests(db, "d1@example.com", "2025-02", [(1, 150000), (1, 50000), (3, 7 * PICO), (28, 1)])
    insert_requests(db, "d2@example.com", "2025-02", [(3, PICO)])
    insert_requests(db, "d1@example.com", "2025-03", [(1, PICO)])
    r = admin(gateway, "GET", "/admin/api/daily", params={"month": "2025-02"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "month": "2025-02", "email": None, "total": "8.000000200001", "requests": 5,
        "days": [{"day": "2025-02-01", "cost": "0.0000002", "requests": 2},
                 {"day": "2025-02-03", "cost": "8", "requests": 2},
                 {"day": "2025-02-28", "cost": "0.000000000001", "requests": 1}]}
    r = admin(gateway, "GET", "/admin/api/daily", params={"month": "2025-02", "email": "d2@example.com"})
    assert r.json()["days"] == [{"day": "2025-02-03", "cost": "1", "requests": 1}]
    assert r.json()["email"] == "d2@example.com"
    r = admin(gateway, "GET", "/admin/api/daily", params={"month": "2024-01"})
    assert r.json()["days"] == [] and r.json()["total"] == "0"
    # Default: this month.
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    assert admin(gateway, "GET", "/admin/api/daily").json()["month"] == month


@pytest.mark.parametrize("params", [{"month": "2025-13"}, {"month": "25-01"},
                                    {"email": "nope"}, {"email": ""}, {"foo": "bar"}])
def test_daily_bad_params(gateway, params):
    r = admin(gateway, "GET", "/admin/api/daily", params=params)
    assert r.status_code == 400 and error_code(r) == "invalid_parameter"


def test_me(gateway):
    r = admin(gateway, "GET", "/admin/api/me")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["email"] == ADMIN and body["admin"] is True
    assert body["role"] == "admin" and body["courses"] == []
    for k in ("spent", "reserved", "cap", "remaining"):
        assert isinstance(body[k], str)
    assert isinstance(body["requests"], int)


def test_methods_and_unknown(gateway):
    r = admin(gateway, "DELETE", "/admin/api/caps")
    assert r.status_code == 405 and "PUT" in r.headers["allow"]
    r = admin(gateway, "GET", "/admin/api/nonexistent")
    assert r.status_code == 404 and error_code(r) == "unknown_url"
