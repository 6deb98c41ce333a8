"""Courses on the request path (issue 15): a token's `course` claim charges
the request to its user and to the course, each held atomically; the course
budget holds under concurrency exactly as a user's cap does (with one hold
per request, and with budget leases on one and on two hosts); membership,
the course's models and endpoints, and the cap a member gets are checked on
every request. Courses and enrolments are written straight to the store
here: the admin API that writes them has tests of its own."""
import concurrent.futures
import datetime
import json
import secrets
import threading
import time

import anthropic
import httpx
import openai
import pytest
from bson import Int64

from conftest import make_token
from test_leases import (CHAT, Answer, assert_consistent, body, ceiling,
                         chats_seen, database, full_usage, pico,
                         start_hosts, usage)

MONTH = time.strftime("%Y-%m", time.gmtime())


def new_course(db, budget, member_cap=None, models=None, endpoints=None):
    cid = "c-" + secrets.token_hex(4)
    doc = {"_id": cid, "name": "Course " + cid, "budget": Int64(budget),
           "instructors": [], "created": datetime.datetime.now(datetime.timezone.utc)}
    if member_cap is not None:
        doc["member_cap"] = Int64(member_cap)
    if models is not None:
        doc["models"] = models
    if endpoints is not None:
        doc["endpoints"] = endpoints
    db.courses.insert_one(doc)
    return cid


def enrol(db, cid, who, cap=None):
    doc = {"_id": "%s|%s" % (cid, who), "course": cid, "who": who,
           "added": datetime.datetime.now(datetime.timezone.utc),
           "added_by": "test"}
    if cap is not None:
        doc["cap"] = Int64(cap)
    db.members.insert_one(doc)


def student(prefix="student"):
    return "%s-%s@uni-%s.test" % (prefix, secrets.token_hex(3), secrets.token_hex(2))


def course_month(db, cid):
    return db.months.find_one({"_id": "#%s|%s" % (cid, MONTH)}) or {}


def user_month(db, email):
    return db.months.find_one({"_id": "%s|%s" % (email, MONTH)}) or {}


def settled_month(get, spent, requests, timeout=10):
    deadline = time.time() + timeout
    while True:
        m = get()
        if (m.get("spent"), m.get("requests")) == (spent, requests) or \
                time.time() > deadline:
            return m
        time.sleep(0.05)


def course_headers(email, cid, extra=None):
    h = {"Authorization": "Bearer " + make_token(email, course=cid),
         "Content-Type": "application/json"}
    h.update(extra or {})
    return h


def post(gw, email, cid, b, extra=None, client=None):
    c = client or httpx.Client()
    try:
        return Answer(c.post(gw.url(CHAT), content=b,
                             headers=course_headers(email, cid, extra), timeout=30))
    except httpx.HTTPError as e:
        return Answer(error=e)
    finally:
        if client is None:
            c.close()


def sdk(gw, email, cid):
    return openai.OpenAI(base_url=gw.openai_base,
                         api_key=make_token(email, course=cid), max_retries=0)


def lease_conf(lease):
    return "" if lease == "off" else \
        "AIProxyHostId host-a\nAIProxyLeaseSize 0.50\nAIProxyLeaseFlush 250\n"


# ------------------------------------------------------------ attribution

@pytest.mark.parametrize("lease", ["off", "on"])
def test_sdk_requests_are_charged_to_user_and_course(make_gateway, up, lease):
    """Chat, a stream and the Anthropic SDK with course tokens: each cost
    header is charged once to the user's month and once to the course's,
    and every record names the course."""
    [gw] = start_hosts(make_gateway, lease)
    db = database(gw)
    cid = new_course(db, pico("10"))
    email = student()
    enrol(db, cid, email)
    client = sdk(gw, email, cid)
    total, n = 0, 0
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=20,
        messages=[{"role": "user", "content": "hello course"}])
    assert raw.parse().choices[0].message.content
    total += pico(raw.headers["cost"])
    n += 1
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", max_tokens=20, stream=True,
            messages=[{"role": "user", "content": "stream for the course"}]) as s:
        for _ in s.iter_lines():
            pass
    n += 1
    a = anthropic.Anthropic(base_url=gw.url("/anthropic"),
                            api_key=make_token(email, course=cid), max_retries=0)
    msg = a.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=20,
        messages=[{"role": "user", "content": "hi from the course"}])
    assert msg.parse().content
    total += pico(msg.headers["cost"])
    n += 1
    recs = list(gw.db().requests.find({"email": email}))
    deadline = time.time() + 10
    while len(recs) < n and time.time() < deadline:
        time.sleep(0.05)
        recs = list(gw.db().requests.find({"email": email}))
    assert len(recs) == n
    assert {r["course"] for r in recs} == {cid}
    spent = sum(r["cost"] for r in recs)
    assert spent > total > 0            # the stream's cost is in its record
    u = settled_month(lambda: user_month(db, email), spent, n)
    c = settled_month(lambda: course_month(db, cid), spent, n)
    assert (u["spent"], u["requests"]) == (spent, n)
    assert (c["spent"], c["requests"]) == (spent, n)
    assert c["email"] == "#" + cid
    # A course account has no request records of its own.
    assert db.requests.count_documents({"email": "#" + cid}) == 0
    gw.stop()
    assert_consistent(course_month(db, cid))
    assert course_month(db, cid)["reserved"] == 0


def test_student_in_two_courses_is_charged_to_each_token_s_course(gateway, up):
    """One student, two courses, a token for each and one without: each
    request lands on its token's course and nowhere else."""
    db = database(gateway)
    a, b = new_course(db, pico("5")), new_course(db, pico("5"))
    email = student("two")
    enrol(db, a, email)
    enrol(db, b, email)
    costs = {}
    for cid, k in ((a, 1), (b, 2), (None, 3)):
        for _ in range(k):
            client = openai.OpenAI(base_url=gateway.openai_base, max_retries=0,
                                   api_key=make_token(email, course=cid))
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", max_tokens=10,
                messages=[{"role": "user", "content": "x" * (5 * k)}])
            costs.setdefault(cid, []).append(pico(raw.headers["cost"]))
    ca = settled_month(lambda: course_month(db, a), sum(costs[a]), 1)
    cb = settled_month(lambda: course_month(db, b), sum(costs[b]), 2)
    assert (ca["spent"], ca["requests"]) == (sum(costs[a]), 1)
    assert (cb["spent"], cb["requests"]) == (sum(costs[b]), 2)
    everything = sum(sum(v) for v in costs.values())
    u = settled_month(lambda: user_month(db, email), everything, 6)
    assert (u["spent"], u["requests"]) == (everything, 6)
    recs = list(gateway.db().requests.find({"email": email}))
    assert sorted(r.get("course") or "" for r in recs) == sorted([a, b, b, "", "", ""])


# ------------------------------------------------------------ the budget holds

@pytest.mark.parametrize("layout", ["off", "on", "on-two-hosts"])
def test_course_budget_holds_for_100_parallel_requests_from_10_students(
        make_gateway, up, layout):
    """A course budget with room for exactly 7 ceilings, 10 students with
    room of their own for far more, 100 requests at once: exactly 7 are
    admitted, the 93 others get 429 course_budget_exceeded and never reach
    the provider, and the students' months hold exactly what the course's
    does; nobody keeps a hold of a refused request."""
    lease = layout.split("-")[0]
    hosts = start_hosts(make_gateway, lease, n=2 if layout.endswith("two-hosts") else 1)
    db = database(hosts[0])
    b = body("a course of ten")
    c = ceiling(b)
    budget = 8 * c - 1
    cid = new_course(db, budget)
    students = [student("ten") for _ in range(10)]
    for s in students:
        enrol(db, cid, s)
        hosts[0].set_cap(s, pico("10"))    # room for a lease on each host
    extra = dict(full_usage(b), **{"X-Fake-Delay-Ms": "300"})
    go = threading.Barrier(100)

    def one(i):
        with httpx.Client() as client:
            go.wait()
            return post(hosts[i % len(hosts)], students[i % 10], cid, b, extra, client)

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(one, range(100)))
    ok = [x for x in answers if x.status == 200]
    refused = [x for x in answers if x.status == 429]
    assert len(ok) == 7, answers
    assert len(refused) == 93, answers
    assert all(x.code == "course_budget_exceeded" for x in refused), sorted(set(x.code for x in refused))
    assert all(x.cost == c for x in ok)
    assert len(chats_seen(up)) == 7
    cm = settled_month(lambda: course_month(db, cid), 7 * c, 7)
    assert (cm["spent"], cm["requests"]) == (7 * c, 7)
    assert_consistent(cm, budget)
    per_user = {}
    for s in students:
        per_user[s] = user_month(db, s)
    deadline = time.time() + 10
    while sum(m.get("spent", 0) for m in per_user.values()) != 7 * c and \
            time.time() < deadline:
        time.sleep(0.05)
        per_user = {s: user_month(db, s) for s in students}
    assert sum(m.get("spent", 0) for m in per_user.values()) == 7 * c
    assert sum(m.get("requests", 0) for m in per_user.values()) == 7
    for h in hosts:
        h.stop()
    for s in students:
        m = user_month(db, s)
        if m:
            assert m["reserved"] == 0 and m["load"] == m["spent"], m
    cm = course_month(db, cid)
    assert cm["reserved"] == 0 and cm["spent"] == 7 * c, cm


@pytest.mark.parametrize("lease", ["off", "on"])
def test_course_refusal_gives_the_user_hold_back(make_gateway, up, lease):
    """A course without room refuses after the user's hold was taken: the
    user's month is left as it was, with nothing held or spent."""
    [gw] = start_hosts(make_gateway, lease)
    db = database(gw)
    b = body("no room in the course")
    cid = new_course(db, ceiling(b) - 1)
    email = student("refused")
    enrol(db, cid, email)
    x = post(gw, email, cid, b, full_usage(b))
    assert (x.status, x.code) == (429, "course_budget_exceeded")
    assert chats_seen(up) == []
    gw.stop()
    m = user_month(db, email)
    assert m.get("spent", 0) == 0 and m.get("requests", 0) == 0, m
    assert m.get("reserved", 0) == 0 and not m.get("holds"), m


# ------------------------------------------------------------ who and what

def test_membership_is_checked_on_every_request(gateway, up):
    """Not a member, a course that does not exist, and a member removed
    mid-month: 403 not_in_course, nothing charged, nothing forwarded; a
    whole domain's enrolment admits its addresses."""
    db = database(gateway)
    cid = new_course(db, pico("5"))
    outsider = student("outsider")
    x = post(gateway, outsider, cid, body())
    assert (x.status, x.code) == (403, "not_in_course")
    x = post(gateway, outsider, "no-such-course", body())
    assert (x.status, x.code) == (403, "not_in_course")
    member = student("member")
    enrol(db, cid, member)
    assert post(gateway, member, cid, body(), usage(3, 3)).status == 200
    db.members.delete_one({"_id": "%s|%s" % (cid, member)})
    x = post(gateway, member, cid, body())
    assert (x.status, x.code) == (403, "not_in_course")
    domain = "@dom-%s.test" % secrets.token_hex(3)
    enrol(db, cid, domain)
    assert post(gateway, "anyone" + domain, cid, body(), usage(3, 3)).status == 200
    assert len(chats_seen(up)) == 2
    assert user_month(db, outsider) == {}


def test_invalid_course_claim_is_refused(gateway, up):
    """A signed token whose course is no course id: 401, as any bad token."""
    r = httpx.post(gateway.url(CHAT), content=body(), timeout=30, headers={
        "Authorization": "Bearer " + make_token(student(), course="../x|y"),
        "Content-Type": "application/json"})
    assert r.status_code == 401
    assert "course" in r.json()["error"]["message"]
    assert chats_seen(up) == []


def test_course_models_and_endpoints_narrow_the_location(gateway, up):
    """A course that allows one model and one endpoint: another model or
    endpoint (both allowed by the location) is 403 and never forwarded."""
    db = database(gateway)
    cid = new_course(db, pico("5"), models=["gpt-4o-mini"],
                     endpoints=["chat/completions"])
    email = student("narrow")
    enrol(db, cid, email)
    assert post(gateway, email, cid, body(), usage(2, 2)).status == 200
    r = httpx.post(gateway.url("/openai/v1/embeddings"), timeout=30,
                   headers=course_headers(email, cid),
                   json={"model": "text-embedding-3-small", "input": "x"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "endpoint_not_allowed"
    r = httpx.post(gateway.url("/proxy/anthropic/v1/messages"), timeout=30,
                   headers=course_headers(email, cid),
                   json={"model": "claude-haiku-4-5", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] in ("model_not_allowed", "endpoint_not_allowed")
    assert len(chats_seen(up)) == 1
    assert not [q for q in up.requests() if "embeddings" in q["path"]]


def test_which_cap_a_member_gets(gateway, up):
    """In a course: the admin's cap for the email wins, else the
    enrolment's cap, else the course's member cap; a domain cap does not
    override the course's; without the course token the usual cap applies."""
    db = database(gateway)
    b = body("which cap")
    c = ceiling(b)
    cid = new_course(db, 1000 * c, member_cap=2 * c)
    default_user, own_cap, enrolled_cap = student("dflt"), student("own"), student("enr")
    for s in (default_user, own_cap, enrolled_cap):
        enrol(db, cid, s)
    db.members.update_one({"_id": "%s|%s" % (cid, enrolled_cap)},
                          {"$set": {"cap": Int64(3 * c)}})
    gateway.set_cap(own_cap, 4 * c)
    gateway.set_cap("@" + default_user.split("@")[1], 50 * c)

    def admitted(email, cid_):
        n = 0
        for _ in range(8):
            x = post(gateway, email, cid_, b, full_usage(b))
            if x.status != 200:
                assert (x.status, x.code) == (429, "insufficient_quota"), x
                break
            n += 1
        return n

    assert admitted(default_user, cid) == 2     # member cap, not the domain's
    assert admitted(enrolled_cap, cid) == 3
    assert admitted(own_cap, cid) == 4
    # Outside the course the domain's cap applies to the same month.
    assert post(gateway, default_user, None, b, full_usage(b)).status == 200


# ------------------------------------------------------------ a child dies

@pytest.mark.parametrize("lease", ["off", "on"])
def test_child_killed_with_course_requests_in_flight(make_gateway, up, lease):
    """kill -9 of the child holding most of a student's slow course
    requests: each request that died is charged its ceiling to the student
    and to the course alike (the student's as an estimated record, the
    course's without a request record under the student's id), so the two
    months still agree exactly with what was paid plus the dead ceilings."""
    from test_leases import (connections_by_child, post_once, random_usage,
                             sweep_expired_holds, wait_for)
    import random
    [gw] = start_hosts(make_gateway, lease, extra="AIProxyHoldTTL 10\n")
    db = database(gw)
    rng = random.Random(15)
    b = body("course child killed")
    c = ceiling(b)
    cid = new_course(db, pico("50"))
    email = student("killed")
    enrol(db, cid, email)
    n = 12
    extra = [dict(random_usage(rng, b), **{"X-Fake-Delay-Ms": "6000"}) for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(post, gw, email, cid, b, e) for e in extra]
        wait_for(lambda: len(chats_seen(up, "X-Fake-Delay-Ms")) == n, 10,
                 "the slow requests to reach the provider")
        by_child = connections_by_child(gw)
        victim = max(by_child, key=by_child.get)
        if lease == "on":
            gw.expect_log(r"AIP02303: request \w+ of \S+ was in flight in a child that died")
        gw.kill_child(victim)
        answers = [f.result(timeout=30) for f in futures]
    dead = [a for a in answers if a.error]
    paid = [a.cost for a in answers if not a.error]
    assert len(dead) == by_child[victim], (by_child, answers)
    assert all(a.status == 200 for a in answers if not a.error)
    if lease == "off":
        sweep_expired_holds(gw, db, [email])
        # The course's holds too: a course request that finds it full.
        db.courses.update_one({"_id": cid}, {"$set": {"budget": Int64(1)}})
        db.users.update_one({"_id": email}, {"$unset": {"cap": ""}})
        x = post(gw, email, cid, body("sweep the course"))
        assert (x.status, x.code) == (429, "course_budget_exceeded"), x
    spent = sum(paid) + len(dead) * c
    k = len(paid) + len(dead)
    u = settled_month(lambda: user_month(db, email), spent, k, timeout=20)
    cm = settled_month(lambda: course_month(db, cid), spent, k, timeout=20)
    assert (u["spent"], u["requests"]) == (spent, k)
    assert (cm["spent"], cm["requests"]) == (spent, k)
    wait_for(lambda: db.requests.count_documents({"email": email}) >= k, 10,
             "the student's records")
    recs = list(db.requests.find({"email": email}))
    assert sorted(r["cost"] for r in recs if r["estimated"]) == [c] * len(dead)
    # Estimated ones too: the hold or ticket kept the course.
    assert all(r.get("course") == cid for r in recs), recs
    swept = list(db.requests.find({"email": "#" + cid}))
    if lease == "off":
        # The course's swept holds' records, each under an id of its own.
        assert sorted(r["cost"] for r in swept) == [c] * len(dead)
        assert all(r["_id"].endswith("#" + cid) for r in swept)
    else:
        assert swept == []
    gw.stop()
    assert course_month(db, cid)["reserved"] == 0


@pytest.mark.parametrize("lease", ["off", "on"])
def test_cache_hit_counts_on_the_course_at_no_cost(make_gateway, up, lease):
    """A cached answer costs nothing and counts as a request, for the
    course as for its student."""
    [gw] = start_hosts(make_gateway, lease)
    db = database(gw)
    cid = new_course(db, pico("5"))
    email = student("cached")
    enrol(db, cid, email)
    client = sdk(gw, email, cid)
    text = "embed for the course " + secrets.token_hex(4)
    first = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=text)
    second = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=text)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    cost = pico(first.headers["cost"])
    assert cost > 0 and second.headers["cost"] == "0"
    cm = settled_month(lambda: course_month(db, cid), cost, 2)
    assert (cm["spent"], cm["requests"]) == (cost, 2)
    u = settled_month(lambda: user_month(db, email), cost, 2)
    assert (u["spent"], u["requests"]) == (cost, 2)


def test_a_spent_course_is_refused_before_the_body_is_read(make_gateway, up):
    """Once a child saw a course spent, its members are refused before
    their bodies are read (as a spent user is): an unparseable body gets
    the course's 429, not a 400, and costs no store write."""
    gw = make_gateway("AIProxyUserCacheTTL 60\n").start()
    db = database(gw)
    b = body("spend the course")
    c = ceiling(b)
    cid = new_course(db, c)     # one full-cost request spends it
    email = student("spent")
    enrol(db, cid, email)
    assert post(gw, email, cid, b, full_usage(b)).status == 200
    # Refused by the store: the child now knows the course is spent.
    x = post(gw, email, cid, b, full_usage(b))
    assert (x.status, x.code) == (429, "course_budget_exceeded")
    with httpx.Client() as client:
        for _ in range(5):  # whichever child answers learns it once
            post(gw, email, cid, b, None, client)
        x = post(gw, email, cid, b"{not json", None, client)
    assert (x.status, x.code) == (429, "course_budget_exceeded"), x
    assert len(chats_seen(up)) == 1


def test_model_list_is_narrowed_by_the_course(gateway, up):
    """On a route that lists its models itself, a course token sees only
    the course's models, and asking for another one is 404."""
    db = database(gateway)
    cid = new_course(db, pico("5"), models=["gpt-4o-mini"])
    email = student("models")
    enrol(db, cid, email)
    client = sdk(gateway, email, cid)
    client.base_url = gateway.url("/v1")
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("claude-haiku-4-5")
    plain = openai.OpenAI(base_url=gateway.url("/v1"), max_retries=0,
                          api_key=make_token(email))
    assert len([m.id for m in plain.models.list()]) > 1
