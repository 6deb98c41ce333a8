"""Courses through the admin API and aiproxy-admin (issue 15): course CRUD,
members, rosters (API and CLI: what was added, already there and invalid,
then the member list shows them), month resets, tokens carrying the course
claim, sign-in choosing a course, and the audit log: one entry per action
with before and after, which nothing in the API can change."""
import base64
import datetime
import json
import os
import secrets
import subprocess
import time

import httpx
import pytest
from bson import Int64

from conftest import ADMIN, BUILD, ROOT, SANITIZE, TOKEN_SECRET, Gateway, make_token
from google_fake import GoogleFake

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

CLI = os.path.join(BUILD, "aiproxy-admin")
PICO = 10 ** 12
MONTH = time.strftime("%Y-%m", time.gmtime())


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-f", "Makefile.apxs", "asan" if SANITIZE else "cli"],
                   cwd=ROOT, check=True)


def tag():
    return secrets.token_hex(3)


def api(gw, method, path, body=None, who=ADMIN, **kw):
    h = kw.pop("headers", {})
    h["Authorization"] = "Bearer " + make_token(who)
    return httpx.request(method, gw.url("/admin/api/" + path), json=body, headers=h,
                         timeout=30, **kw)


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def cli(gw, *args):
    p = subprocess.run([CLI] + list(args), env=gw.env, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def claims(token):
    """The payload, read without checking (the test checks the claim)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def audit(gw, course=None):
    params = {"course": course} if course else {}
    return ok(api(gw, "GET", "audit", params=dict(params, limit="1000")))["data"]


def new_course(gw, **extra):
    cid = "ca-" + tag()
    body = {"id": cid, "name": "Course " + cid, "budget": "20"}
    body.update(extra)
    ok(api(gw, "POST", "courses", body), 201)
    return cid


# ---- courses ----------------------------------------------------------------

def test_course_create_replace_list_delete(gateway):
    cid = "ca-" + tag()
    inst = "Teach-%s@Uni.Test" % tag()
    body = {"id": cid, "name": "Intro", "budget": "200", "member_cap": "5.50",
            "models": ["gpt-4o-mini"], "endpoints": ["chat/completions"],
            "instructors": [inst], "alerts": [50, 90]}
    created = ok(api(gateway, "POST", "courses", body), 201)
    assert created["budget"] == "200" and created["member_cap"] == "5.5"
    assert created["instructors"] == [inst.lower()]
    doc = gateway.db().courses.find_one({"_id": cid})
    assert doc["budget"] == 200 * PICO and isinstance(doc["budget"], Int64)
    assert doc["member_cap"] == Int64(55 * PICO // 10) and doc["alerts"] == [50, 90]
    assert isinstance(doc["created"], datetime.datetime)
    ok(api(gateway, "POST", "members", {"course": cid, "add": ["a-%s@uni.test" % tag()]}))
    rows = {c["id"]: c for c in ok(api(gateway, "GET", "courses"))["data"]}
    assert rows[cid]["members"] == 1 and rows[cid]["month"] == {
        "spent": "0", "reserved": "0", "requests": 0}
    assert rows[cid]["models"] == ["gpt-4o-mini"] and rows[cid]["alerts"] == [50, 90]
    # Replace: same id, 200, created kept, fields not given are gone.
    again = ok(api(gateway, "POST", "courses", {"id": cid, "name": "Intro 2",
                                                "budget": "100"}))
    assert again["member_cap"] is None and again["models"] == []
    doc2 = gateway.db().courses.find_one({"_id": cid})
    assert doc2["created"] == doc["created"] and "models" not in doc2
    r = ok(api(gateway, "DELETE", "courses", params={"id": cid}))
    assert r == {"id": cid, "deleted": True, "members_removed": 1}
    assert gateway.db().members.count_documents({"course": cid}) == 0
    r = api(gateway, "DELETE", "courses", params={"id": cid})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_course"
    actions = [(e["action"], e["target"]) for e in audit(gateway, cid)]
    assert actions[:4] == [("course.delete", cid), ("course.update", cid),
                           ("member.add", actions[2][1]), ("course.create", cid)]
    update = audit(gateway, cid)[1]
    assert update["before"]["name"] == "Intro" and update["after"]["name"] == "Intro 2"
    assert update["before"]["budget"] == "200" and update["after"]["budget"] == "100"


@pytest.mark.parametrize("body,fragment", [
    ({"name": "x", "budget": "1"}, "id"),
    ({"id": "Bad Id", "name": "x", "budget": "1"}, "id"),
    ({"id": "-x", "name": "x", "budget": "1"}, "id"),
    ({"id": "a" * 33, "name": "x", "budget": "1"}, "id"),
    ({"id": "ok1", "budget": "1"}, "name"),
    ({"id": "ok1", "name": "", "budget": "1"}, "name"),
    ({"id": "ok1", "name": "x"}, "budget"),
    ({"id": "ok1", "name": "x", "budget": 5}, "budget"),
    ({"id": "ok1", "name": "x", "budget": "-1"}, "budget"),
    ({"id": "ok1", "name": "x", "budget": "1", "member_cap": "2"}, "member_cap"),
    ({"id": "ok1", "name": "x", "budget": "1", "models": "gpt"}, "models"),
    ({"id": "ok1", "name": "x", "budget": "1", "models": ["a b"]}, "models"),
    ({"id": "ok1", "name": "x", "budget": "1", "instructors": ["nope"]}, "instructors"),
    ({"id": "ok1", "name": "x", "budget": "1", "alerts": [0]}, "alerts"),
    ({"id": "ok1", "name": "x", "budget": "1", "alerts": [1001]}, "alerts"),
])
def test_bad_courses(gateway, body, fragment):
    r = api(gateway, "POST", "courses", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"
    assert fragment in r.json()["error"]["message"]
    assert gateway.db().courses.find_one({"_id": "ok1"}) is None


# ---- members and rosters ------------------------------------------------------

def test_members_add_cap_remove(gateway):
    cid = new_course(gateway, member_cap="3")
    a, b = "a-%s@uni.test" % tag(), "B-%s@Uni.Test" % tag()
    r = ok(api(gateway, "POST", "members", {"course": cid, "add": [a, b, "@dom.test"]}))
    assert r["added"] == [a, b.lower(), "@dom.test"] and r["already"] == []
    r = ok(api(gateway, "POST", "members", {"course": cid, "add": [a],
                                            "cap": {a: "7", "@dom.test": "1"}}))
    assert r["already"] == [a] and r["cap"] == {a: "7", "@dom.test": "1"}
    gateway.set_cap(b.lower(), 9 * PICO)   # an admin's cap for the email wins
    rows = {m["who"]: m for m in ok(api(gateway, "GET", "members",
                                        params={"course": cid}))["data"]}
    assert rows[a]["cap"] == "7" and rows[a]["effective_cap"] == "7"
    assert rows[b.lower()]["cap"] is None and rows[b.lower()]["effective_cap"] == "9"
    assert rows["@dom.test"]["effective_cap"] == "1"
    assert rows[a]["spent"] == "0" and rows[a]["added_by"] == ADMIN
    r = ok(api(gateway, "POST", "members", {"course": cid, "cap": {a: None},
                                            "remove": [b, "nobody@x.test"]}))
    assert r["removed"] == [b.lower()] and r["not_members"] == ["nobody@x.test"]
    assert r["cap"] == {a: None}
    r = ok(api(gateway, "GET", "members", params={"course": cid, "limit": "1"}))
    assert r["total"] == 2 and len(r["data"]) == 1
    entries = audit(gateway, cid)
    caps = [e for e in entries if e["action"] == "member.cap" and e["target"] == a]
    assert [(e["before"], e["after"]) for e in caps] == [("7", None), (None, "7")]
    removed = [e for e in entries if e["action"] == "member.remove"]
    assert removed[0]["target"] == b.lower() and removed[0]["before"] == {"who": b.lower()}


@pytest.mark.parametrize("body,status,code", [
    ({"add": ["x@y.z"]}, 400, "invalid_parameter"),
    ({"course": "no-such-course", "add": ["x@y.z"]}, 404, "unknown_course"),
    ({"course": "COURSE", "add": ["not an email"]}, 400, "invalid_parameter"),
    ({"course": "COURSE", "add": "x@y.z"}, 400, "invalid_parameter"),
    ({"course": "COURSE", "cap": {"x@y.z": 5}}, 400, "invalid_parameter"),
    ({"course": "COURSE", "cap": {"x@y.z": "20.000001"}}, 400, "invalid_parameter"),
    ({"course": "COURSE", "cap": ["x@y.z"]}, 400, "invalid_parameter"),
])
def test_bad_members(gateway, body, status, code):
    cid = new_course(gateway)
    if body.get("course") == "COURSE":
        body["course"] = cid
    r = api(gateway, "POST", "members", body)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert gateway.db().members.count_documents({"course": cid}) == 0


ROSTER = ("\ufeffEmail,Name\r\n"
          "alice-{t}@Uni.Test,Alice\r\n"
          "\r\n"
          "\"bob-{t}@uni.test\",\"Bob, Jr.\"\r\n"
          "not-an-email,Nobody\r\n"
          "ALICE-{t}@uni.test,dup\r\n"
          "@dept-{t}.test\r\n"
          "  carol-{t}@uni.test  ,x\n"
          "a b@c.d\n")


def test_roster_api_csv_and_json(gateway):
    cid = new_course(gateway)
    t = tag()
    ok(api(gateway, "POST", "members", {"course": cid, "add": ["carol-%s@uni.test" % t]}))
    r = ok(api(gateway, "POST", "roster", params={"course": cid},
               content=ROSTER.format(t=t).encode(), headers={"Content-Type": "text/csv"}))
    assert r["added"] == ["alice-%s@uni.test" % t, "bob-%s@uni.test" % t, "@dept-%s.test" % t]
    assert r["already"] == ["carol-%s@uni.test" % t]
    assert r["invalid"] == [
        {"line": 5, "value": "not-an-email", "reason": "not an email address or @domain"},
        {"line": 9, "value": "a b@c.d", "reason": "not an email address or @domain"}]
    members = {m["who"] for m in ok(api(gateway, "GET", "members",
                                        params={"course": cid}))["data"]}
    assert members == set(r["added"] + r["already"])
    # The same as JSON: everyone already there now.
    r = ok(api(gateway, "POST", "roster", {"csv": ROSTER.format(t=t)}, params={"course": cid}))
    assert r["added"] == [] and len(r["already"]) == 4
    # One entry per import (its counts), one per member added by `members`.
    adds = [e["target"] for e in audit(gateway, cid) if e["action"] == "member.add"]
    assert adds == ["carol-%s@uni.test" % t]
    imports = [e for e in audit(gateway, cid) if e["action"] == "roster.import"]
    assert [e["after"] for e in imports] == [{"added": 0, "already": 4, "invalid": 2},
                                             {"added": 3, "already": 1, "invalid": 2}]


def test_roster_limits(gateway):
    cid = new_course(gateway)
    many = "".join("u%d@x.test\n" % i for i in range(10001)).encode()
    r = api(gateway, "POST", "roster", params={"course": cid}, content=many,
            headers={"Content-Type": "text/csv"})
    assert r.status_code == 413, r.text   # over the admin body limit first
    # Within the body limit: the same address 10001 times still counts.
    lines = b"a@x.t\n" * 10001
    assert len(lines) < 65536
    r = api(gateway, "POST", "roster", params={"course": cid}, content=lines,
            headers={"Content-Type": "text/csv"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "roster_too_large"
    assert "10000" in r.json()["error"]["message"]
    assert gateway.db().members.count_documents({"course": cid}) == 0
    r = api(gateway, "POST", "roster", {"rows": []}, params={"course": cid})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_roster_and_courses_by_cli(gateway, tmp_path):
    cid = "cl-" + tag()
    t = tag()
    rc, out, err = cli(gateway, "course", "set", cid, "--name", "CLI course", "--budget",
                       "50", "--member-cap", "2", "--models", "gpt-4o-mini,gpt-4o",
                       "--instructors", "Prof-%s@uni.test" % t, "--alerts", "80,100")
    assert rc == 0, err
    assert "created" in out
    doc = gateway.db().courses.find_one({"_id": cid})
    assert doc["models"] == ["gpt-4o-mini", "gpt-4o"] and doc["alerts"] == [80, 100]
    assert doc["instructors"] == ["prof-%s@uni.test" % t]
    f = tmp_path / "roster.csv"
    f.write_text(ROSTER.format(t=t))
    rc, out, err = cli(gateway, "roster", "import", cid, str(f))
    assert rc == 0, err
    assert "added    alice-%s@uni.test" % t in out
    assert "invalid  line 5: 'not-an-email'" in out
    assert "4 added, 0 already members, 2 invalid" in out
    rc, out, _ = cli(gateway, "roster", "import", cid, str(f))
    assert "0 added, 4 already members, 2 invalid" in out
    members = {m["who"] for m in ok(api(gateway, "GET", "members",
                                        params={"course": cid}))["data"]}
    assert "carol-%s@uni.test" % t in members and len(members) == 4
    rc, out, _ = cli(gateway, "member", "remove", cid, "carol-%s@uni.test" % t)
    assert rc == 0 and "removed" in out
    rc, out, _ = cli(gateway, "course", "show", cid)
    assert "members:     3" in out and "gpt-4o-mini,gpt-4o" in out
    rc, out, _ = cli(gateway, "course", "list")
    assert cid in out
    user = "cli:" + __import__("pwd").getpwuid(os.geteuid()).pw_name
    entries = audit(gateway, cid)
    assert {e["who"] for e in entries} == {user} and {e["role"] for e in entries} == {"cli"}
    assert [e["action"] for e in entries][:2] == ["member.remove", "roster.import"]
    rc, out, _ = cli(gateway, "audit", "--course", cid, "--limit", "2")
    assert rc == 0 and "member.remove" in out and "course.create" not in out
    rc, out, _ = cli(gateway, "course", "delete", cid)
    assert rc == 0 and "3 enrolment" in out
    assert cli(gateway, "course", "show", cid)[0] == 2
    assert cli(gateway, "course", "set", "Bad", "--name", "x", "--budget", "1")[0] == 1
    assert cli(gateway, "roster", "import", "no-such", str(f))[0] == 2


# ---- resets and tokens ------------------------------------------------------------

def test_reset_keeps_holds(gateway):
    email = "reset-%s@uni.test" % tag()
    db = gateway.db()
    db.months.insert_one({"_id": "%s|%s" % (email, MONTH), "email": email, "month": MONTH,
                          "spent": Int64(3 * PICO), "reserved": Int64(PICO),
                          "load": Int64(4 * PICO), "requests": Int64(7),
                          "holds": {"r1": {"a": Int64(PICO), "x": Int64(2 ** 50)}}})
    r = ok(api(gateway, "POST", "reset", {"email": email}))
    assert r["before"] == {"spent": "3", "reserved": "1", "requests": 7}
    assert r["after"] == {"spent": "0", "reserved": "1", "requests": 7}
    doc = db.months.find_one({"_id": "%s|%s" % (email, MONTH)})
    assert (doc["spent"], doc["reserved"], doc["load"]) == (0, PICO, PICO)
    assert "r1" in doc["holds"]
    e = [e for e in audit(gateway) if e["target"] == email][0]
    assert e["action"] == "month.reset" and e["before"]["spent"] == "3"
    assert e["after"]["spent"] == "0"
    db.months.update_one({"_id": "%s|%s" % (email, MONTH)},
                         {"$inc": {"spent": Int64(PICO), "load": Int64(PICO)}})
    rc, out, err = cli(gateway, "reset", email, "--month", MONTH)
    assert rc == 0 and "spent $1 -> $0" in out, err
    assert db.months.find_one({"_id": "%s|%s" % (email, MONTH)})["spent"] == 0
    assert api(gateway, "POST", "reset", {"email": email, "month": "2026-13"}).status_code == 400


def test_tokens_carry_the_course(gateway):
    inst = "tok-inst-%s@uni.test" % tag()
    cid = new_course(gateway, instructors=[inst])
    member = "tok-%s@uni.test" % tag()
    ok(api(gateway, "POST", "members", {"course": cid, "add": [member]}))
    # An admin's call: an instructor may not (t/test_roles.py).
    assert api(gateway, "POST", "tokens", {"email": member, "course": cid},
               who=inst).status_code == 403
    r = ok(api(gateway, "POST", "tokens", {"email": member, "course": cid, "days": 2}))
    assert r["email"] == member and r["course"] == cid
    c = claims(r["token"])
    assert c["email"] == member and c["course"] == cid
    assert r["exp"] == c["exp"] and abs(c["exp"] - c["iat"] - 2 * 86400) < 2
    # The token works on the course's own endpoints.
    me = httpx.get(gateway.url("/admin/api/me"),
                   headers={"Authorization": "Bearer " + r["token"]}).json()
    assert me["email"] == member
    r = ok(api(gateway, "POST", "tokens", {"email": member, "days": 0}))
    assert r["course"] is None and r["exp"] is None and "course" not in claims(r["token"])
    e = [e for e in audit(gateway, cid) if e["action"] == "token.issue"][0]
    assert e["role"] == "admin" and e["target"] == member
    assert e["after"]["course"] == cid and r["token"] not in json.dumps(audit(gateway))
    rc, out, err = cli(gateway, "token", member, "--course", cid)
    assert rc == 0, err
    assert claims(out.strip())["course"] == cid
    assert cli(gateway, "token", member, "--course", "Not Valid")[0] == 1
    rc, _, err = cli(gateway, "token", member, "--course", "no-such-course")
    assert rc == 2 and "no such course" in err
    rc, _, err = cli(gateway, "token", "stranger@uni.test", "--course", cid)
    assert rc == 2 and "not a member" in err


# ---- the audit log --------------------------------------------------------------

def test_caps_and_revocation_are_audited(gateway):
    who = "aud-%s@uni.test" % tag()
    ok(api(gateway, "PUT", "caps", {"who": who, "cap": "1.25"}))
    ok(api(gateway, "PUT", "caps", {"who": who, "cap": None}))
    ok(api(gateway, "POST", "revoke", {"email": who}))
    entries = [e for e in audit(gateway) if e["target"] == who]
    assert [e["action"] for e in entries] == ["revoke", "cap.clear", "cap.set"]
    assert (entries[2]["before"], entries[2]["after"]) == (None, "1.25")
    assert (entries[1]["before"], entries[1]["after"]) == ("1.25", None)
    assert entries[0]["before"] is None and isinstance(entries[0]["after"], int)
    assert all(e["who"] == ADMIN and e["role"] == "admin" for e in entries)
    assert all(e["time"].endswith("Z") for e in entries)
    rc, _, _ = cli(gateway, "cap", "set", who, "2")
    assert rc == 0
    e = [e for e in audit(gateway) if e["target"] == who][0]
    assert e["action"] == "cap.set" and e["role"] == "cli" and e["before"] is None


def test_nothing_modifies_the_audit_log(gateway):
    ok(api(gateway, "PUT", "caps", {"who": "aud2-%s@uni.test" % tag(), "cap": "1"}))
    before = list(gateway.db().audit.find({}, sort=[("_id", 1)]))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = api(gateway, method, "audit", {"action": "x"})
        assert r.status_code == 405 and r.headers["allow"] == "GET", r.text
    r = api(gateway, "GET", "audit", params={"limit": "0"})
    assert r.status_code == 400
    r = api(gateway, "GET", "audit", params={"drop": "1"})
    assert r.status_code == 400
    after = list(gateway.db().audit.find({}, sort=[("_id", 1)]))
    assert after[:len(before)] == before


# ---- sign-in chooses the course ---------------------------------------------------

@pytest.fixture(scope="module")
def google():
    g = GoogleFake().start()
    yield g
    g.stop()


def test_signin_course(store, upstream, google):
    gw = Gateway(store, upstream, extra_conf=google.gateway_conf()).start()
    try:
        one, two = "one-%s@example.com" % tag(), "two-%s@example.com" % tag()
        c1, c2 = new_course(gw), new_course(gw)
        ok(api(gw, "POST", "members", {"course": c1, "add": [one, two]}))
        ok(api(gw, "POST", "members", {"course": c2, "add": [two]}))

        def sign_in(email, **fields):
            return httpx.get(gw.url("/token"), params=dict(
                credential=google.id_token(email), **fields), timeout=30)
        r = ok(sign_in(one))
        assert r["course"] == c1 and claims(r["token"])["course"] == c1
        r = ok(sign_in(two))           # two courses: none unless named
        assert "course" not in r and "course" not in claims(r["token"])
        r = ok(sign_in(two, course=c2))
        assert claims(r["token"])["course"] == c2
        r = sign_in(one, course=c2)
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_in_course"
        r = sign_in(one, course="Bad Id")
        assert r.status_code == 400
        r = ok(sign_in("nobody-%s@example.com" % tag()))
        assert "course" not in claims(r["token"])
        assert claims(r["token"])["email"].startswith("nobody-")
        assert TOKEN_SECRET not in gw.error_log()
    finally:
        gw.stop()


# ---- store down -------------------------------------------------------------------

@pytest.mark.expect_log(r"AIP01106", r"AIP01001", r"AIP04100", r"AIP04003")
def test_store_down_is_503_everywhere(upstream):
    from conftest import Store
    s = Store()
    if not s.local:
        pytest.skip("needs the local store to stop it (MONGODB_URI is set)")
    s.start()
    gw = Gateway(s, upstream).start()
    try:
        cid = new_course(gw, instructors=["prof-down@uni.test"])
        ok(api(gw, "GET", "me"))       # the caller's settings may be remembered
        s.stop()
        for method, path, body, params in [
                ("GET", "me", None, None), ("GET", "courses", None, None),
                ("POST", "courses", {"id": "x1", "name": "x", "budget": "1"}, None),
                ("GET", "members", None, {"course": cid}),
                ("POST", "members", {"course": cid, "add": ["a@b.c"]}, None),
                ("POST", "reset", {"email": "a@b.c"}, None),
                ("POST", "tokens", {"email": "a@b.c", "course": cid}, None),
                ("GET", "audit", None, None)]:
            r = api(gw, method, path, body, params=params)
            assert r.status_code == 503, "%s %s: %s" % (method, path, r.text)
            assert r.json()["error"]["code"] == "store_unavailable"
    finally:
        gw.stop()
        s.stop()
