"""Roles and scope on every /admin/api endpoint (issue 15): each endpoint
called by an admin, an instructor of the course, an instructor of another
course, a student member, an outsider and no one (no token), with the exact
status and error code each must get. Site-wide endpoints stay admin-only
(403 not_admin); what instructors may do is limited to their courses and
members (403 forbidden outside); students reach `me` only."""
import secrets

import httpx
import pytest

from conftest import ADMIN, make_token

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

TAG = secrets.token_hex(3)
C = "rc-" + TAG                    # the course
D = "rd-" + TAG                    # another course
GONE = "rg-" + TAG                 # deleted by the admin's row
NEW = "rn-" + TAG                  # created by the admin's row
I1 = "inst1-%s@uni.test" % TAG     # teaches C
I2 = "inst2-%s@uni.test" % TAG     # teaches D
S = "stud-%s@uni.test" % TAG       # member of C
T = "tee-%s@uni.test" % TAG        # member of D
V = "victim-%s@uni.test" % TAG     # member of C: revoked, reset, tokens
O = "out-%s@uni.test" % TAG        # in no course

ROLES = {"admin": ADMIN, "instructor": I1, "other_instructor": I2,
         "student": S, "outsider": O, "none": None}

OK = (200, None)
NOT_ADMIN = (403, "not_admin")
FORBIDDEN = (403, "forbidden")
NO_TOKEN = (401, "invalid_api_key")


def call(gw, who, method, path, body=None, params=None, content=None, headers=None):
    h = dict(headers or {})
    if who:
        h["Authorization"] = "Bearer " + make_token(who)
    kw = {"json": body} if content is None else {"content": content}
    return httpx.request(method, gw.url(path), params=params, headers=h, timeout=30, **kw)


@pytest.fixture(scope="module")
def gw(gateway):
    def admin(method, path, body=None, **kw):
        r = call(gateway, ADMIN, method, path, body, **kw)
        assert r.status_code in (200, 201), r.text
        return r
    admin("POST", "/admin/api/courses", {"id": C, "name": "Course C", "budget": "10",
                                         "instructors": [I1]})
    admin("POST", "/admin/api/courses", {"id": D, "name": "Course D", "budget": "10",
                                         "instructors": [I2]})
    admin("POST", "/admin/api/courses", {"id": GONE, "name": "Gone", "budget": "1"})
    admin("POST", "/admin/api/members", {"course": C, "add": [S, V]})
    admin("POST", "/admin/api/members", {"course": D, "add": [T]})
    return gateway


def row(admin, instructor, other, student, outsider, none=NO_TOKEN):
    return {"admin": admin, "instructor": instructor, "other_instructor": other,
            "student": student, "outsider": outsider, "none": none}


ADMIN_ONLY = row(OK, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN)
COURSE_C = row(OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN)
ANY_TEACHER = row(OK, OK, OK, FORBIDDEN, FORBIDDEN)
EVERYONE = row(OK, OK, OK, OK, OK)
# Acting on a person (a token, a month reset, a revocation): admins only.
ACT = row(OK, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN)

# (name, method, path, kwargs, expectations by role)
TABLE = [
    ("usage", "GET", "/admin/api/usage", {}, ADMIN_ONLY),
    ("caps-list", "GET", "/admin/api/caps", {}, ADMIN_ONLY),
    ("caps-set", "PUT", "/admin/api/caps", {"body": {"who": V, "cap": "1"}}, ADMIN_ONLY),
    ("caps-post", "POST", "/admin/api/caps", {"body": {"who": "@uni.test", "cap": None}},
     ADMIN_ONLY),
    ("daily", "GET", "/admin/api/daily", {}, ADMIN_ONLY),
    ("me", "GET", "/admin/api/me", {}, EVERYONE),
    ("revoke", "POST", "/admin/api/revoke", {"body": {"email": V}}, ACT),
    ("revoke-other-course", "POST", "/admin/api/revoke", {"body": {"email": T}}, ACT),
    ("courses-list", "GET", "/admin/api/courses", {}, ANY_TEACHER),
    ("courses-create", "POST", "/admin/api/courses",
     {"body": {"id": NEW, "name": "New", "budget": "5", "instructors": [I1]}},
     row((201, None), NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN)),
    ("courses-delete", "DELETE", "/admin/api/courses", {"params": {"id": GONE}}, ADMIN_ONLY),
    ("members-list", "GET", "/admin/api/members", {"params": {"course": C}}, COURSE_C),
    ("members-list-D", "GET", "/admin/api/members", {"params": {"course": D}},
     row(OK, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN)),
    ("members-add", "POST", "/admin/api/members",
     {"body": {"course": C, "add": ["added-%s@uni.test" % TAG]}}, COURSE_C),
    ("members-add-D", "POST", "/admin/api/members",
     {"body": {"course": D, "add": ["added-%s@uni.test" % TAG]}},
     row(OK, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN)),
    ("members-cap", "POST", "/admin/api/members", {"body": {"course": C, "cap": {V: "2"}}},
     COURSE_C),
    ("members-cap-over-budget", "POST", "/admin/api/members",
     {"body": {"course": C, "cap": {V: "10.01"}}},
     row((400, "invalid_parameter"), (400, "invalid_parameter"), FORBIDDEN, FORBIDDEN,
         FORBIDDEN)),
    ("roster", "POST", "/admin/api/roster",
     {"params": {"course": C}, "content": b"email\nroster-%s@uni.test\n" % TAG.encode(),
      "headers": {"Content-Type": "text/csv"}}, COURSE_C),
    ("reset", "POST", "/admin/api/reset", {"body": {"email": V, "course": C}}, ACT),
    ("reset-any-course", "POST", "/admin/api/reset", {"body": {"email": V}}, ACT),
    ("reset-other-member", "POST", "/admin/api/reset", {"body": {"email": T, "course": C}},
     ACT),
    ("reset-self", "POST", "/admin/api/reset", {"body": {"email": I1}}, ACT),
    ("tokens", "POST", "/admin/api/tokens", {"body": {"email": V, "course": C}}, ACT),
    ("tokens-non-member", "POST", "/admin/api/tokens", {"body": {"email": O, "course": C}},
     row((400, "not_in_course"), NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN)),
    ("tokens-no-course", "POST", "/admin/api/tokens", {"body": {"email": V}}, ACT),
    ("audit", "GET", "/admin/api/audit", {}, ANY_TEACHER),
    ("audit-C", "GET", "/admin/api/audit", {"params": {"course": C}}, COURSE_C),
    ("unknown", "GET", "/admin/api/nonexistent", {},
     row((404, "unknown_url"), (404, "unknown_url"), (404, "unknown_url"),
         (404, "unknown_url"), (404, "unknown_url"))),
]


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("name,method,path,kw,expect", TABLE, ids=[t[0] for t in TABLE])
def test_scope(gw, role, name, method, path, kw, expect):
    status, code = expect[role]
    r = call(gw, ROLES[role], method, path, **kw)
    assert r.status_code == status, "%s as %s: %s" % (name, role, r.text)
    if code:
        err = r.json()["error"]
        assert err["code"] == code, r.text
        if status == 403:
            assert err["type"] == "permission_error"


def test_instructor_sees_only_own_course_rows(gw):
    courses = call(gw, I1, "GET", "/admin/api/courses").json()["data"]
    assert {c["id"] for c in courses} == {C, NEW}
    audit = call(gw, I1, "GET", "/admin/api/audit").json()["data"]
    assert audit and all(e["course"] in (C, NEW) for e in audit)
    assert all(e["course"] != D for e in audit)


def test_me_roles(gw):
    assert call(gw, ADMIN, "GET", "/admin/api/me").json()["role"] == "admin"
    me = call(gw, I1, "GET", "/admin/api/me").json()
    assert me["role"] == "instructor" and me["admin"] is False
    assert {"id": C, "name": "Course C", "teaches": True} in me["courses"]
    me = call(gw, S, "GET", "/admin/api/me").json()
    assert me["role"] == "student" and me["courses"] == [
        {"id": C, "name": "Course C", "teaches": False}]
    assert call(gw, O, "GET", "/admin/api/me").json()["courses"] == []


def test_instructor_cannot_take_over_whom_they_enrol(gw):
    """An instructor decides who is a member, so membership cannot be what
    lets them act on a person: enrolling someone (any student, an admin,
    another instructor, a whole domain) and then minting their token,
    resetting their month or revoking them is refused, and nothing is
    done: the victim's token still works and their month is untouched."""
    victim = "plain-%s@uni.test" % TAG
    domain = "@" + ADMIN.split("@")[1]
    gw.db().months.insert_one({"_id": "%s|2026-11" % victim, "email": victim,
                               "month": "2026-11", "spent": 7000000,
                               "reserved": 0, "requests": 3})
    r = call(gw, I1, "POST", "/admin/api/members",
             {"course": C, "add": [victim, ADMIN, I2, domain]})
    assert r.status_code == 200, r.text
    try:
        for target in (victim, ADMIN, I2):
            for path, body in (("/admin/api/tokens", {"email": target, "course": C}),
                               ("/admin/api/tokens", {"email": target, "course": C,
                                                      "days": 0}),
                               ("/admin/api/reset", {"email": target, "month": "2026-11"}),
                               ("/admin/api/revoke", {"email": target})):
                r = call(gw, I1, "POST", path, body)
                assert (r.status_code, r.json()["error"]["code"]) == (403, "not_admin"), \
                    (path, target, r.text)
                assert "token" not in r.json()
        assert gw.db().months.find_one({"_id": "%s|2026-11" % victim})["spent"] == 7000000
        assert (gw.db().users.find_one({"_id": victim}) or {}).get("revoked_at") is None
        assert call(gw, victim, "GET", "/admin/api/me").json()["email"] == victim
        assert call(gw, ADMIN, "GET", "/admin/api/me").json()["role"] == "admin"
        assert call(gw, I2, "GET", "/admin/api/me").json()["role"] == "instructor"
        assert not [e for e in call(gw, ADMIN, "GET", "/admin/api/audit").json()["data"]
                    if e["target"] == victim and e["action"] != "member.add"]
    finally:
        call(gw, ADMIN, "POST", "/admin/api/members",
             {"course": C, "remove": [victim, ADMIN, I2, domain]})


def test_no_person_is_named_like_a_course_account(gw):
    """'#' begins the ledger accounts of courses: an email beginning with it
    would hide its month from every user listing. Refused."""
    r = call(gw, ADMIN, "POST", "/admin/api/tokens", {"email": "#ghost-%s@uni.test" % TAG})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameter", r.text
    assert "token" not in r.json()
    r = call(gw, ADMIN, "POST", "/admin/api/members", {"course": C, "add": ["#g@uni.test"]})
    assert "#g@uni.test" not in [m["who"] for m in
                                 call(gw, ADMIN, "GET", "/admin/api/members",
                                      params={"course": C}).json()["data"]]
