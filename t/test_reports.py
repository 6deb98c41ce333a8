"""Reports (issue 15): a user's requests (paged, newest first), totals per
model, who is near their cap, and CSV exports by user, model or day for a
month or a range of UTC days; each scoped by role (admin: anything;
instructor: a course they teach, that course's records only; student: their
own). Spend comes from real requests through the openai SDK with course
tokens (a stream cut short gives an estimated record); past days and months
are records written straight to the store. aiproxy-admin export prints the
API's CSV byte for byte."""
import csv
import datetime
import io
import os
import secrets
import subprocess
import time
from decimal import Decimal

import httpx
import openai
import pytest
from bson import Int64

from conftest import ADMIN, BUILD, ROOT, SANITIZE, make_token

CLI = os.path.join(BUILD, "aiproxy-admin")
PICO = 10 ** 12
MONTH = time.strftime("%Y-%m", time.gmtime())
UTC = datetime.timezone.utc


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-f", "Makefile.apxs", "asan" if SANITIZE else "cli"],
                   cwd=ROOT, check=True)


def tag():
    return secrets.token_hex(3)


def pico(usd):
    d = Decimal(usd) * PICO
    assert d == d.to_integral_value(), usd
    return int(d)


def api(gw, what, params=None, who=ADMIN):
    return httpx.get(gw.url("/admin/api/" + what), params=params or {},
                     headers={"Authorization": "Bearer " + make_token(who)}, timeout=30)


def ok(r):
    assert r.status_code == 200, r.text
    return r


def forbidden(r):
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"


def bad(r, word):
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_parameter" and word in err["message"], err


def rows(r):
    """A CSV answer: its content type, then its rows as dicts."""
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(r.text, newline="")))


def new_course(db, instructors=(), budget="50", member_cap=None):
    cid = "r-" + tag()
    doc = {"_id": cid, "name": "Reports " + cid, "budget": Int64(pico(budget)),
           "instructors": list(instructors), "created": datetime.datetime.now(UTC)}
    if member_cap:
        doc["member_cap"] = Int64(pico(member_cap))
    db.courses.insert_one(doc)
    return cid


def enrol(db, cid, who, cap=None):
    doc = {"_id": "%s|%s" % (cid, who), "course": cid, "who": who,
           "added": datetime.datetime.now(UTC), "added_by": "test"}
    if cap:
        doc["cap"] = Int64(pico(cap))
    db.members.insert_one(doc)


def record(db, email, when, cost, model="gpt-4o-mini", course=None, estimated=False):
    """A request record written straight to the store."""
    doc = {"_id": "t-" + secrets.token_hex(8), "email": email,
           "month": when.strftime("%Y-%m"), "time": when, "endpoint": "chat/completions",
           "model": model, "provider": "openai", "input_tokens": Int64(10),
           "cached_tokens": Int64(0), "cache_write_tokens": Int64(0),
           "cache_write_1h_tokens": Int64(0), "output_tokens": Int64(5),
           "cost": Int64(cost), "reserved": Int64(cost), "status": 200,
           "estimated": estimated}
    if course:
        doc["course"] = course
    db.requests.insert_one(doc)
    return doc


def cli(gw, *args):
    p = subprocess.run([CLI] + list(args), env=gw.env, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


# ---- spend through the gateway ------------------------------------------------

class Seed:
    pass


@pytest.fixture(scope="module")
def seed(gateway):
    """A course with an instructor and three members (two by email, one by
    @domain); chats through the SDK with course tokens, a stream cut short
    (estimated), and one request of a without the course."""
    db = gateway.db()
    s = Seed()
    s.inst = "inst-%s@uni.test" % tag()
    dom = "dom-%s.test" % tag()
    s.a, s.b, s.c = ("a-%s@uni.test" % tag(), "b-%s@uni.test" % tag(),
                     "c-%s@%s" % (tag(), dom))
    s.cid = new_course(db, [s.inst])
    s.other = new_course(db, ["other-" + s.inst])
    enrol(db, s.cid, s.a)
    enrol(db, s.cid, s.b)
    enrol(db, s.cid, "@" + dom)
    s.headers = {}          # email -> [cost of each course request]
    s.models = {}           # model -> course requests

    def chat(email, model, prompt, completion, course=True):
        client = openai.OpenAI(base_url=gateway.openai_base, max_retries=0,
                               api_key=make_token(email, course=s.cid if course else None))
        usage = {"X-Fake-Usage": '{"prompt_tokens": %d, "completion_tokens": %d}'
                 % (prompt, completion)}
        if model.startswith("text-embedding"):
            raw = client.embeddings.with_raw_response.create(
                model=model, input="report me", extra_headers=usage)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "report me"}],
                extra_headers=usage)
        raw.parse()
        if course:
            s.headers.setdefault(email, []).append(pico(raw.headers["cost"]))
            s.models[model] = s.models.get(model, 0) + 1
        return pico(raw.headers["cost"])

    chat(s.a, "gpt-4o-mini", 1000, 100)
    chat(s.a, "gpt-4o-mini", 2000, 10)
    chat(s.a, "text-embedding-3-small", 3, 0)
    s.a_outside = chat(s.a, "gpt-4o-mini", 50, 5, course=False)
    chat(s.b, "text-embedding-3-small", 2, 0)
    chat(s.b, "gpt-4o-mini", 77, 7)
    chat(s.c, "gpt-4o-mini", 10, 1)
    # A stream cut after 4 events: charged an estimate.
    h = {"Authorization": "Bearer " + make_token(s.c, course=s.cid), "X-Fake-Cut-After": "4"}
    with httpx.Client(timeout=30) as c:
        with pytest.raises(httpx.HTTPError):
            with c.stream("POST", gateway.url("/openai/v1/chat/completions"), headers=h,
                          json={"model": "gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": "cut"}]}) as r:
                for _ in r.iter_lines():
                    pass
    s.models["gpt-4o-mini"] += 1
    deadline = time.time() + 15
    while time.time() < deadline:
        gateway.wait_records()
        est = list(db.requests.find({"email": s.c, "estimated": True}))
        if est:
            break
        time.sleep(0.1)
    assert len(est) == 1 and est[0]["course"] == s.cid
    s.headers[s.c].append(est[0]["cost"])
    return s


@pytest.mark.expect_log(r"AH01110")
def test_export_by_user_sums_the_cost_headers(gateway, seed):
    r = ok(api(gateway, "export", {"by": "user", "course": seed.cid}))
    assert ('filename="aiproxy-user-%s-%s.csv"' % (MONTH, seed.cid)) in \
        r.headers["content-disposition"]
    assert r.text.startswith("email,requests,estimated,input_tokens,cached_tokens,"
                             "cache_write_tokens,output_tokens,cost\r\n")
    got = rows(r)
    assert [x["email"] for x in got] == sorted([seed.a, seed.b, seed.c])
    by = {x["email"]: x for x in got}
    for email, costs in seed.headers.items():
        assert pico(by[email]["cost"]) == sum(costs), email
        assert int(by[email]["requests"]) == len(costs)
    assert [by[e]["estimated"] for e in (seed.a, seed.b, seed.c)] == ["0", "0", "1"]
    assert sum(pico(x["cost"]) for x in got) == sum(map(sum, seed.headers.values()))
    # Money is exact decimal dollars, never a float's digits.
    assert all("e" not in x["cost"].lower() for x in got)
    # a's request outside the course is in a's own export, not the course's.
    mine = rows(ok(api(gateway, "export", {"by": "user", "email": seed.a})))
    assert len(mine) == 1 and pico(mine[0]["cost"]) == sum(seed.headers[seed.a]) + seed.a_outside


@pytest.mark.expect_log(r"AH01110")
def test_models_counts_and_totals(gateway, seed):
    j = ok(api(gateway, "models", {"course": seed.cid})).json()
    assert {m["model"]: m["requests"] for m in j["data"]} == seed.models
    assert j["total"]["requests"] == sum(seed.models.values())
    assert pico(j["total"]["cost"]) == sum(map(sum, seed.headers.values()))
    assert sum(pico(m["cost"]) for m in j["data"]) == pico(j["total"]["cost"])
    csv_models = rows(ok(api(gateway, "export", {"by": "model", "course": seed.cid})))
    assert {x["model"]: int(x["requests"]) for x in csv_models} == seed.models


@pytest.mark.expect_log(r"AH01110")
def test_requests_paging_newest_first_without_overlap(gateway, seed):
    db = gateway.db()
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    same = now - datetime.timedelta(seconds=30)
    for i in range(7):   # two share a time: the id orders them
        when = same if i < 2 else now - datetime.timedelta(seconds=40 + i)
        if when.strftime("%Y-%m") == MONTH:
            record(db, seed.a, when, 1000 + i, course=seed.cid)
    every = ok(api(gateway, "requests", {"email": seed.a, "limit": "1000"})).json()["data"]
    n = db.requests.count_documents({"email": seed.a, "month": MONTH})
    assert len(every) == n >= 8
    keys = [(x["time"], x["id"]) for x in every]
    assert keys == sorted(keys, reverse=True)
    pages = []
    for skip in range(0, n, 3):
        page = ok(api(gateway, "requests", {"email": seed.a, "skip": str(skip),
                                             "limit": "3"})).json()
        assert page["skip"] == skip and page["limit"] == 3 and len(page["data"]) <= 3
        pages += [x["id"] for x in page["data"]]
    assert pages == [x["id"] for x in every] and len(set(pages)) == n
    one = every[-1]
    assert set(one) >= {"time", "endpoint", "model", "input_tokens", "cached_tokens",
                        "cache_write_tokens", "output_tokens", "cost", "estimated",
                        "status", "course"}
    bad(api(gateway, "requests", {"email": seed.a, "limit": "1001"}), "limit")


def test_near_at_80_percent(gateway):
    db = gateway.db()
    inst = "inst-%s@uni.test" % tag()
    cid = new_course(db, [inst], budget="10", member_cap="2")
    d1, d2, d3, d4, d5 = ("n%d-%s@near.test" % (i, tag()) for i in range(1, 6))
    for who in (d1, d2, d3, d4):
        enrol(db, cid, who, cap="0.50" if who == d3 else None)
    db.users.insert_one({"_id": d1, "cap": Int64(pico("1"))})     # admin's cap wins
    db.users.insert_one({"_id": d2, "cap": Int64(pico("1"))})

    def month(acct, spent):
        db.months.insert_one({"_id": "%s|%s" % (acct, MONTH), "email": acct, "month": MONTH,
                              "spent": Int64(pico(spent)), "reserved": Int64(0),
                              "load": Int64(pico(spent)), "requests": Int64(3),
                              "holds": {}, "done": []})
    month(d1, "0.85")     # 85% of its own 1.00
    month(d2, "0.79")     # 79%: below
    month(d3, "0.40")     # exactly 80% of the enrolment's 0.50
    month(d4, "1.59")     # 79.5% of the course's member cap 2.00
    month(d5, "1.90")     # not a member
    month("#" + cid, "9.00")
    j = ok(api(gateway, "near", {"threshold": "80", "course": cid}, who=inst)).json()
    assert [(x["email"], x["pct"], pico(x["cap"]), pico(x["spent"])) for x in j["data"]] == \
        [(d1, 85, pico("1"), pico("0.85")), (d3, 80, pico("0.5"), pico("0.4"))]
    c = j["course"]
    assert (c["id"], pico(c["spent"]), pico(c["budget"]), c["pct"]) == \
        (cid, pico("9"), pico("10"), 90)
    # The admin's site-wide view: never a course account.
    every = ok(api(gateway, "near", {"threshold": "80"})).json()["data"]
    emails = [x["email"] for x in every]
    assert d1 in emails and d5 in emails and d2 not in emails
    assert not any(e.startswith("#") for e in emails)
    forbidden(api(gateway, "near", {"threshold": "80"}, who=inst))
    forbidden(api(gateway, "near", {"course": cid}, who=d1))
    bad(api(gateway, "near", {"threshold": "0"}), "threshold")
    bad(api(gateway, "near", {"threshold": "x"}), "threshold")


def test_range_export_across_a_month_boundary(gateway):
    db = gateway.db()
    cid = new_course(db)
    e, f = "e-%s@uni.test" % tag(), "f-%s@uni.test" % tag()
    at = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    record(db, e, at("2018-01-30T23:59:59.999"), 1, course=cid)       # before from
    record(db, e, at("2018-01-31T00:00:00.000"), 10, course=cid)
    record(db, e, at("2018-01-31T23:59:59.999"), 20, course=cid, model="gpt-4o")
    record(db, f, at("2018-02-01T00:00:00.000"), 300, course=cid)
    record(db, e, at("2018-02-01T23:59:59.999"), 4000, course=cid, estimated=True)
    record(db, e, at("2018-02-02T00:00:00.000"), 50000, course=cid)   # after to
    q = {"from": "2018-01-31", "to": "2018-02-01", "course": cid}
    r = ok(api(gateway, "export", dict(q, by="day")))
    assert 'filename="aiproxy-day-2018-01-31_2018-02-01-%s.csv"' % cid in \
        r.headers["content-disposition"]
    assert [(x["day"], int(x["requests"]), pico(x["cost"]), x["estimated"])
            for x in rows(r)] == [("2018-01-31", 2, 30, "0"), ("2018-02-01", 2, 4300, "1")]
    users = rows(ok(api(gateway, "export", dict(q, by="user"))))
    assert [(x["email"], int(x["requests"]), pico(x["cost"])) for x in users] == \
        sorted([(e, 3, 4030), (f, 1, 300)])
    # A month alone: January's records, whatever their day.
    jan = rows(ok(api(gateway, "export", {"by": "user", "month": "2018-01", "course": cid})))
    assert [(x["email"], int(x["requests"]), pico(x["cost"])) for x in jan] == [(e, 3, 31)]
    bad(api(gateway, "export", dict(q, by="day", to="2018-01-30")), "to")


def test_csv_cells_are_quoted_and_formula_safe(gateway):
    db = gateway.db()
    cid = new_course(db)
    who = "g-%s@uni.test" % tag()
    nasty = ['=HYPERLINK("http://x","y")', "+1+2", "-3", "@SUM(A1)", 'a,b "q"', "line\nbreak"]
    for i, m in enumerate(nasty):
        record(db, who, datetime.datetime.now(UTC), 7 + i, model=m, course=cid)
    got = rows(ok(api(gateway, "export", {"by": "model", "course": cid})))
    cells = sorted(x["model"] for x in got)
    assert cells == sorted(["'" + m if m[0] in "=+-@" else m for m in nasty])
    assert all(int(x["requests"]) == 1 for x in got)


@pytest.mark.expect_log(r"AH01110")
def test_scope_student_instructor_admin(gateway, seed):
    a, b = seed.a, seed.b
    # A student: their own records only, whatever they ask for.
    mine = ok(api(gateway, "requests", who=a)).json()
    assert mine["email"] == a and {x["email"] for x in mine["data"]} == {a}
    forbidden(api(gateway, "requests", {"email": b}, who=a))
    forbidden(api(gateway, "export", {"by": "user", "email": b}, who=a))
    forbidden(api(gateway, "models", {"email": b}, who=a))
    forbidden(api(gateway, "requests", {"email": b, "course": seed.cid}, who=a))
    own = rows(ok(api(gateway, "export", {"by": "user"}, who=a)))
    assert [x["email"] for x in own] == [a]
    forbidden(api(gateway, "usage", who=a))
    # The instructor: with their course, that course's records only.
    inst = seed.inst
    recs = ok(api(gateway, "requests", {"email": a, "course": seed.cid}, who=inst)).json()
    assert len(recs["data"]) >= 3 and {x["course"] for x in recs["data"]} == {seed.cid}
    assert {x["email"] for x in recs["data"]} == {a}
    forbidden(api(gateway, "requests", {"email": a}, who=inst))
    forbidden(api(gateway, "requests", {"email": a, "course": seed.other}, who=inst))
    forbidden(api(gateway, "export", {"by": "user", "course": seed.other}, who=inst))
    outsider = "x-%s@uni.test" % tag()
    forbidden(api(gateway, "requests", {"email": outsider, "course": seed.cid}, who=inst))
    # The @domain member is in scope too.
    ok(api(gateway, "requests", {"email": seed.c, "course": seed.cid}, who=inst))
    theirs = rows(ok(api(gateway, "export", {"by": "user", "course": seed.cid}, who=inst)))
    admins = rows(ok(api(gateway, "export", {"by": "user", "course": seed.cid})))
    assert theirs == admins and len(admins) == 3
    # /usage with course=: the members' months, never the course account.
    u = ok(api(gateway, "usage", {"course": seed.cid, "month": MONTH}, who=inst)).json()
    assert sorted(x["email"] for x in u["data"]) == sorted([a, b, seed.c])
    forbidden(api(gateway, "usage", {"course": seed.other}, who=inst))
    forbidden(api(gateway, "usage", who=inst))
    r = httpx.get(gateway.url("/usage"), params={"course": seed.cid},
                  headers={"Authorization": "Bearer " + make_token(inst)}, timeout=30)
    assert r.status_code == 200 and len(r.json()["data"]) == 3
    assert gateway.db().months.find_one({"_id": "#%s|%s" % (seed.cid, MONTH)})
    # A course account that spent the most in its month is still no user.
    db = gateway.db()
    for acct, spent in (("#" + seed.cid, "900"), (a, "1")):
        db.months.insert_one({"_id": "%s|2019-03" % acct, "email": acct, "month": "2019-03",
                              "spent": Int64(pico(spent)), "reserved": Int64(0),
                              "load": Int64(pico(spent)), "requests": Int64(1)})
    for path in ("/admin/api/usage", "/usage"):
        r = httpx.get(gateway.url(path), params={"month": "2019-03"}, timeout=30,
                      headers={"Authorization": "Bearer " + make_token(ADMIN)})
        assert [x["email"] for x in ok(r).json()["data"]] == [a]
    # Nobody without a token.
    assert httpx.get(gateway.url("/admin/api/export?by=user"), timeout=30).status_code == 401


def test_bad_parameters_name_themselves(gateway):
    bad(api(gateway, "export", {"by": "week"}), "by")
    bad(api(gateway, "export", {}), "by")
    bad(api(gateway, "export", {"by": "user", "month": "2025-13"}), "month")
    bad(api(gateway, "export", {"by": "user", "from": "2025-02-30", "to": "2025-03-01"}),
        "from")
    bad(api(gateway, "export", {"by": "user", "from": "2018-02-01"}), "to")
    bad(api(gateway, "export", {"by": "user", "month": "2025-01", "from": "2025-01-01",
                                "to": "2025-01-02"}), "month")
    bad(api(gateway, "export", {"by": "user", "from": "2024-01-01", "to": "2025-06-01"}),
        "400 days")
    bad(api(gateway, "requests", {"sort": "x"}), "Unknown parameter 'sort'")
    bad(api(gateway, "models", {"course": "Bad Id"}), "course")
    bad(api(gateway, "requests", {"email": "nope"}), "email")
    r = httpx.post(gateway.url("/admin/api/export"), timeout=30,
                   headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 405


@pytest.mark.expect_log(r"AH01110")
def test_cli_export_is_the_api_export(gateway, seed):
    today = datetime.datetime.now(UTC).date()
    for q in ({"by": "user"}, {"by": "model"}, {"by": "day"},
              {"by": "day", "from": str(today - datetime.timedelta(days=300)),
               "to": str(today)}):
        q = dict(q, course=seed.cid)
        body = ok(api(gateway, "export", q)).content
        args = []
        for k, v in q.items():
            args += ["--" + k, v]
        rc, out, err = cli(gateway, "export", *args)
        assert rc == 0, err
        assert out == body and body.count(b"\r\n") >= 2
    rc, out, err = cli(gateway, "export", "--by", "user", "--email", seed.a)
    assert rc == 0 and out == ok(api(gateway, "export", {"by": "user", "email": seed.a})).content
    rc, out, err = cli(gateway, "export", "--by", "week")
    assert rc == 1 and b"--by" in err
    rc, out, err = cli(gateway, "export", "--by", "day", "--from", "2025-02-30",
                       "--to", "2025-03-01")
    assert rc == 1 and b"from" in err and out == b""
    # requests: newest first, the course named, the estimate marked.
    rc, out, err = cli(gateway, "requests", seed.c, "--limit", "5")
    lines = out.decode().splitlines()
    assert rc == 0 and lines[0].startswith("TIME (UTC)") and len(lines) == 3
    assert all(l.endswith(" " + seed.cid) for l in lines[1:])
    assert sum("*" in l.split()[-2] for l in lines[1:]) == 1


@pytest.mark.expect_log(r"AIP04100", r"AIP01106", r"AIP01001", r"AIP01101")
def test_store_down_is_503_and_no_csv(up):
    """No half CSV when the store is gone: the API answers 503 JSON and
    aiproxy-admin exits 2 with nothing on stdout."""
    from conftest import Gateway, Store
    s = Store()
    if not s.local:
        pytest.skip("needs the local store to stop it (MONGODB_URI is set)")
    s.start()
    try:
        with Gateway(s, up) as gw:
            s.stop()
            for what, q in (("export", {"by": "user"}), ("requests", {}),
                            ("models", {}), ("near", {})):
                r = api(gw, what, q)
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/json")
                assert r.json()["error"]["code"] == "store_unavailable"
            rc, out, err = cli(gw, "export", "--by", "day", "--month", MONTH)
            assert rc == 2 and out == b"" and b"store" in err
            rc, out, err = cli(gw, "requests", ADMIN)
            assert rc == 2 and out == b""
    finally:
        s.stop()
