"""Budget leases (issue 14). With AIProxyLeaseSize a host reserves a slice
of a user's remaining month in the store once (a hold with l: true) and
admits that user's requests from shared memory until the slice is used up;
a flusher writes spent money and request counts back in batches. Whatever
the timing, caps hold exactly, the store ends up with exactly what the
clients were told they paid, and a crash loses no more than documented.

Tests parametrized with "off" run the one-hold-per-request path (no lease
directive), which must keep these guarantees too; they also prove the
harness itself."""
import concurrent.futures
import json
import random
import re
import socket
import subprocess
import threading
import time
from decimal import Decimal

import httpx
import pytest
from bson import Int64

from conftest import PRICES, Gateway, make_token
from helpers import chat_cost, new_email

CHAT = "/openai/v1/chat/completions"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 50
FLUSH_MS = 250
# How long the month document may take to show what the clients saw: one
# flush interval, with room for a loaded two-core machine.
SETTLE_S = 10


# ------------------------------------------------------------ configuration

def host_conf(lease, host, size="0.50", flush=FLUSH_MS, idle=None, ttl=None):
    """A host's extra configuration: with lease "off", none of the lease
    directives (AIProxyLeaseSize 0 is the default), else AIProxyLeaseSize
    size."""
    if lease == "off":
        return ""
    lines = ["AIProxyHostId %s" % host, "AIProxyLeaseSize %s" % size,
             "AIProxyLeaseFlush %d" % flush]
    if idle is not None:
        lines.append("AIProxyLeaseIdle %d" % idle)
    if ttl is not None:
        lines.append("AIProxyLeaseTTL %d" % ttl)
    return "\n".join(lines) + "\n"


def start_hosts(make_gateway, lease, n=1, extra="", **kw):
    """n gateways on one store and one database, hosts host-a, host-b, ..."""
    hosts = []
    for i in range(n):
        conf = host_conf(lease, "host-" + "abcd"[i], **kw) + extra
        db = hosts[0].db_name if hosts else None
        hosts.append(make_gateway(conf, db=db).start())
    return hosts


# ------------------------------------------------------------ money

def body(text="hi", max_tokens=MAX_TOKENS):
    """A chat request body, compact: the gateway reserves per body byte."""
    return json.dumps({"model": MODEL, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": text}]},
                      separators=(",", ":")).encode()


def ceiling(b, max_tokens=MAX_TOKENS):
    """What the gateway reserves for body b (t/test_caps.py's rule)."""
    p = PRICES[MODEL]
    return len(b) * max(p["input"], p["cache_write"]) + max_tokens * p["output"]


def usage(prompt, completion):
    """The fake upstream reports (and so the gateway charges) these counts."""
    return {"X-Fake-Usage": json.dumps({"prompt_tokens": prompt,
                                        "completion_tokens": completion})}


def full_usage(b, max_tokens=MAX_TOKENS):
    """Usage that costs exactly the ceiling of body b."""
    assert chat_cost(MODEL, len(b), max_tokens) == ceiling(b, max_tokens)
    return usage(len(b), max_tokens)


def random_usage(rng, b, max_tokens=MAX_TOKENS):
    """Usage within the ceiling (a charge above it would be logged)."""
    return usage(rng.randint(1, len(b)), rng.randint(1, max_tokens))


def pico(usd):
    return int(Decimal(usd) * 10 ** 12)


# ------------------------------------------------------------ the store

def database(gw):
    """The gateway's database, read directly (gw.db() waits for records)."""
    return gw.store.client()[gw.db_name]


def month_doc(db, email):
    return db.months.find_one({"_id": "%s|%s" % (email, time.strftime("%Y-%m",
                                                                      time.gmtime()))})


def leases(m):
    """The month document's lease holds, by id."""
    return {k: v for k, v in ((m or {}).get("holds") or {}).items() if v.get("l")}


def settled(db, email, spent, requests, timeout=SETTLE_S):
    """The month document once its spent and requests equal what the
    clients saw (it lags by up to a flush interval), or as it is at the
    timeout; the caller asserts equality, so a shortfall fails too."""
    deadline = time.time() + timeout
    while True:
        m = month_doc(db, email) or {}
        if (m.get("spent"), m.get("requests")) == (spent, requests) or \
                time.time() > deadline:
            return m
        time.sleep(0.05)


def assert_consistent(m, cap=None):
    """The month's own arithmetic: load = spent + reserved, reserved = the
    holds' amounts, and never over the cap."""
    holds = m.get("holds") or {}
    assert m["load"] == m["spent"] + m["reserved"], m
    assert m["reserved"] == sum(h["a"] for h in holds.values()), m
    if cap is not None:
        assert m["load"] <= cap, m


def assert_returned(m):
    """After every host stopped gracefully: nothing reserved, no lease."""
    assert m["reserved"] == 0, m
    assert m["load"] == m["spent"], m
    assert leases(m) == {}, m
    assert_consistent(m)


# ------------------------------------------------------------ clients

class Answer:
    """What a client keeps of a response: status, headers, error code."""

    def __init__(self, r=None, error=None):
        self.error = error
        self.status = r.status_code if r is not None else None
        h = r.headers if r is not None else {}
        self.cost = pico(h["cost"]) if "cost" in h else None
        self.monthly_cost = pico(h["monthlyCost"]) if "monthlyCost" in h else None
        self.monthly_requests = (int(h["monthlyRequests"]) if "monthlyRequests" in h
                                 else None)
        self.code = None
        if r is not None and r.status_code != 200:
            try:
                self.code = r.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                pass

    def __repr__(self):
        return "<%s cost=%s code=%s error=%r>" % (self.status, self.cost, self.code,
                                                  self.error)


TOKENS = {}


def headers_for(email, extra=None):
    if email not in TOKENS:
        TOKENS[email] = "Bearer " + make_token(email)
    h = {"Authorization": TOKENS[email], "Content-Type": "application/json"}
    h.update(extra or {})
    return h


def post(client, gw, email, b, extra=None, timeout=30):
    """One chat request; a broken connection is an Answer with its error."""
    try:
        r = client.post(gw.url(CHAT), content=b, headers=headers_for(email, extra),
                        timeout=timeout)
    except httpx.HTTPError as e:
        return Answer(error=e)
    return Answer(r)


def post_once(gw, email, b, extra=None, timeout=30):
    """One chat request on a connection of its own."""
    with httpx.Client() as client:
        return post(client, gw, email, b, extra, timeout)


def post_all(jobs, concurrency):
    """jobs: (gateway, email, body, extra headers). Sent from concurrency
    threads, each with one keep-alive connection per gateway. Returns the
    answers in job order and the seconds it took."""
    local = threading.local()
    clients = []
    lock = threading.Lock()

    def one(job):
        gw, email, b, extra = job
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=4))
            with lock:
                clients.append(c)
        return post(c, gw, email, b, extra)

    t0 = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(one, jobs))
    finally:
        for c in clients:
            c.close()
    return answers, time.time() - t0


def in_background(fn, *args):
    """fn(*args) in a daemon thread; join() returns its result."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn(*args)), daemon=True)
    t.start()

    def join(timeout=60):
        t.join(timeout)
        assert not t.is_alive(), "still running after %ss" % timeout
        return out["r"]
    return join


def chats_seen(up, header=None):
    """The chat requests the fake upstream received (with header, if given)."""
    return [q for q in up.requests() if q["path"].endswith("/chat/completions")
            and (header is None or header.lower() in q["headers"])]


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


# ------------------------------------------------------------ caps

@pytest.mark.parametrize("layout", ["off", "on", "on-two-hosts"])
def test_room_for_one_ceiling_admits_exactly_one(make_gateway, up, layout):
    """100 parallel requests from a user whose month has room for one
    request's ceiling and not two: exactly one is admitted and charged,
    the other 99 get 429 insufficient_quota and never reach the provider;
    with leases on one host, and split 50/50 over two hosts on one store."""
    lease = layout.split("-")[0]
    hosts = start_hosts(make_gateway, lease, n=2 if layout.endswith("two-hosts") else 1)
    email = new_email("one-of-100")
    b = body("exactly one of a hundred")
    c = ceiling(b)
    cap = 2 * c - 1
    hosts[0].set_cap(email, cap)
    # It costs its whole ceiling, so whenever it settles no room is left
    # for a second; the delay keeps it in flight while the rest arrive.
    extra = dict(full_usage(b), **{"X-Fake-Delay-Ms": "500"})
    go = threading.Barrier(100)

    def one(i):
        with httpx.Client() as client:
            go.wait()
            return post(client, hosts[i % len(hosts)], email, b, extra)

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(one, range(100)))

    ok = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(ok) == 1, answers
    assert len(refused) == 99, answers
    assert all(a.code == "insufficient_quota" and a.cost == 0 for a in refused), refused
    assert ok[0].cost == c
    assert len(chats_seen(up)) == 1
    db = database(hosts[0])
    m = settled(db, email, c, 1)
    assert (m["spent"], m["requests"]) == (c, 1)
    assert_consistent(m, cap)
    for h in hosts:
        h.stop()
    m = month_doc(db, email)
    assert (m["spent"], m["requests"]) == (c, 1)
    assert_returned(m)
    [rec] = db.requests.find({"email": email})
    assert rec["cost"] == c and rec["estimated"] is False


@pytest.mark.parametrize("lease", ["off", "on"])
def test_near_the_cap_a_lease_takes_exactly_what_is_left(make_gateway, up, lease):
    """A cap smaller than the lease size, with room for three ceilings and
    7 pico-dollars: three requests at once are all admitted (the lease
    took what was left, not less) and a fourth is refused while they run
    and after (not more); the store's load covers the three in flight and
    never passes the cap."""
    [gw] = start_hosts(make_gateway, lease)
    db = database(gw)
    email = new_email("near-cap")
    b = body("near the cap")
    c = ceiling(b)
    cap = 3 * c + 7
    gw.set_cap(email, cap)
    slow = dict(full_usage(b), **{"X-Fake-Delay-Ms": "1500"})
    with httpx.Client() as client:
        joins = [in_background(post_once, gw, email, b, slow) for _ in range(3)]
        wait_for(lambda: len(chats_seen(up)) == 3, 10, "three requests at the provider")
        m = month_doc(db, email)
        assert_consistent(m, cap)
        assert m["load"] >= 3 * c, m
        if lease == "on":
            [hold] = leases(m).values()
            assert hold["h"] == "host-a", m
        refused = post(client, gw, email, b, full_usage(b))
        assert (refused.status, refused.code) == (429, "insufficient_quota")
        answers = [j() for j in joins]
        assert [(a.status, a.cost) for a in answers] == [(200, c)] * 3, answers
        refused = post(client, gw, email, b, full_usage(b))
        assert (refused.status, refused.code) == (429, "insufficient_quota")
    assert len(chats_seen(up)) == 3
    m = settled(db, email, 3 * c, 3)
    assert (m["spent"], m["requests"]) == (3 * c, 3)
    assert_consistent(m, cap)
    gw.stop()
    m = month_doc(db, email)
    assert (m["spent"], m["requests"]) == (3 * c, 3)
    assert_returned(m)


@pytest.mark.parametrize("lease", ["off", "on"])
def test_monthly_headers_exact_on_one_host(make_gateway, up, lease):
    """On one host, each answer's monthlyCost and monthlyRequests are the
    store's figures (here a month already begun) plus everything this host
    charged since, to the pico-dollar, though the store lags behind."""
    [gw] = start_hosts(make_gateway, lease)
    db = database(gw)
    email = new_email("headers")
    month = time.strftime("%Y-%m", time.gmtime())
    spent0, requests0 = 123456789, 7
    db.months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(spent0), "reserved": Int64(0), "load": Int64(spent0),
        "requests": Int64(requests0), "holds": {}})
    rng = random.Random(14)
    total, n = spent0, requests0
    with httpx.Client() as client:
        for i in range(30):
            b = body("running total %d" % i)
            a = post(client, gw, email, b, random_usage(rng, b))
            assert a.status == 200, a
            total += a.cost
            n += 1
            assert (a.monthly_cost, a.monthly_requests) == (total, n), (i, a)
    m = settled(db, email, total, n)
    assert (m["spent"], m["requests"]) == (total, n)
    gw.stop()
    assert_returned(month_doc(db, email))


# ------------------------------------------------------------ lease life

def test_idle_lease_returns_to_the_store(make_gateway, up):
    """A lease unused for AIProxyLeaseIdle is given back while the host
    runs: its hold is removed and nothing stays reserved; the next request
    takes a new lease."""
    [gw] = start_hosts(make_gateway, "on", idle=2)
    db = database(gw)
    email = new_email("idle")
    b = body("then idle")
    with httpx.Client() as client:
        a = post(client, gw, email, b, full_usage(b))
        assert a.status == 200, a
        m = month_doc(db, email)
        assert len(leases(m)) == 1 and m["reserved"] > 0, m
        deadline = time.time() + 2 + SETTLE_S
        while leases(m) and time.time() < deadline:
            time.sleep(0.1)
            m = month_doc(db, email)
        assert leases(m) == {}, m
        assert (m["spent"], m["requests"], m["reserved"]) == (a.cost, 1, 0)
        assert_consistent(m)
        again = post(client, gw, email, b, full_usage(b))
        assert again.status == 200, again
    assert len(leases(month_doc(db, email))) == 1
    m = settled(db, email, a.cost + again.cost, 2)
    assert (m["spent"], m["requests"]) == (a.cost + again.cost, 2)
    gw.stop()
    assert_returned(month_doc(db, email))


def test_live_lease_is_renewed_and_not_swept(make_gateway, up):
    """While its host lives, a lease's expiry keeps moving forward, so it
    is never swept: long after AIProxyLeaseTTL, a request on another host
    that finds the month full (the cap lowered to leave less than its
    ceiling beside the lease) is refused, and the lease stays."""
    ttl = 3
    a_host, b_host = start_hosts(make_gateway, "on", n=2, ttl=ttl)
    db = database(a_host)
    email = new_email("renewed")
    b = body("renewed")
    c = ceiling(b)
    with httpx.Client() as client:
        first = post(client, a_host, email, b, full_usage(b))
        assert first.status == 200, first
        [(lid, lease)] = leases(month_doc(db, email)).items()
        assert lease["h"] == "host-a"
        assert lease["x"] <= (time.time() + ttl + 1) * 1000, lease
        time.sleep(2 * ttl + 1)
        m = month_doc(db, email)
        now_ms = time.time() * 1000
        assert lid in leases(m), m
        assert leases(m)[lid]["x"] > now_ms, (m, now_ms)
        a_host.set_cap(email, m["load"] + c - 1)
        refused = post(client, b_host, email, b, full_usage(b))
        assert (refused.status, refused.code) == (429, "insufficient_quota")
        m = month_doc(db, email)
        assert lid in leases(m), m
        assert (m["spent"], m["requests"]) == (c, 1), m
    a_host.stop()
    b_host.stop()
    m = month_doc(db, email)
    assert (m["spent"], m["requests"]) == (c, 1), m
    assert_returned(m)


@pytest.mark.parametrize("host_id", ["named-host", None], ids=["AIProxyHostId", "hostname"])
def test_lease_is_named_by_its_host(make_gateway, up, host_id):
    """A lease's h is AIProxyHostId, or the machine's hostname without it."""
    conf = host_conf("on", host_id or "x")
    if host_id is None:
        conf = "".join(line + "\n" for line in conf.splitlines()
                       if not line.startswith("AIProxyHostId"))
    gw = make_gateway(conf).start()
    email = new_email("named")
    b = body("whose lease")
    assert post_once(gw, email, b).status == 200
    [lease] = leases(month_doc(database(gw), email)).values()
    assert lease["h"] == (host_id or socket.gethostname())


def test_requests_are_admitted_and_settled_without_store_writes(store, upstream, up):
    """Once a host holds a lease, its user's requests cost the month
    document no store round trip: with AIProxyLeaseFlush at a minute,
    twenty requests touch it a few times at most (taking the lease) and
    leave it unspent; the stop writes everything, exactly."""
    from store_relay import StoreRelay
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    relay = StoreRelay(host, int(port))
    gw = Gateway(RelayedStore(store, relay), upstream,
                 extra_conf=host_conf("on", "host-a", flush=60000))
    try:
        gw.start()
        db = database(gw)
        email = new_email("batched")
        key = "%s|%s" % (email, time.strftime("%Y-%m", time.gmtime()))
        relay.watch(key.encode())
        rng = random.Random(20)
        b = body("batched")
        with httpx.Client() as client:
            answers = [post(client, gw, email, b, random_usage(rng, b)) for _ in range(20)]
        assert all(a.status == 200 for a in answers), answers
        touched = relay.count(key.encode())
        assert touched <= 4, "%d store operations on the month for 20 requests" % touched
        m = month_doc(db, email)
        assert (m["spent"], m["requests"]) == (0, 0), m
        assert len(leases(m)) == 1, m
        gw.stop()
        spent = sum(a.cost for a in answers)
        m = month_doc(db, email)
        assert (m["spent"], m["requests"]) == (spent, 20), m
        assert_returned(m)
    finally:
        gw.stop()
        relay.stop()


class RelayedStore:
    """The session's store, reached by a gateway through t/store_relay.py
    (which can lose the store's replies); tests read it directly."""

    def __init__(self, store, relay):
        self.store, self.uri = store, relay.uri

    def client(self):
        return self.store.client()


# What losing store replies logs (as in t/test_ledger_faults.py),
# and the lease writer's own note that a write failed and will be retried.
@pytest.mark.expect_log(r"AIP01001", r"AIP01101", r"AIP01106", r"AIP02302")
def test_lease_writes_whose_reply_is_lost_count_once(store, upstream, up):
    """The store applies a lease write (growth or flush) but its reply is
    lost; the host writes again with the same sequence, which must not
    count twice: the month still equals the cost headers exactly."""
    from store_relay import StoreRelay
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    relay = StoreRelay(host, int(port))
    gw = Gateway(RelayedStore(store, relay), upstream,
                 extra_conf=host_conf("on", "host-a", size="0.0005"))
    try:
        gw.start()
        db = database(gw)
        email = new_email("lost-lease-reply")
        rng = random.Random(7)
        b = body("lose my lease write")
        answers = []
        with httpx.Client() as client:
            answers.append(post(client, gw, email, b, random_usage(rng, b)))
            # Every write of this user's lease from now on, growths and
            # flushes alike, until five replies are lost.
            relay.drop_reply(b"findAndModify", email.encode(), b"host-a", count=5)
            deadline = time.time() + 30
            while relay.dropped < 5 and time.time() < deadline:
                answers.append(post(client, gw, email, b, random_usage(rng, b)))
                time.sleep(0.02)
            relay.disarm()
            answers += [post(client, gw, email, b, random_usage(rng, b))
                        for _ in range(20)]
        assert relay.dropped >= 5, "the relay lost no lease write reply"
        ok = [a for a in answers if a.status == 200]
        # A lost reply may fail the request it was for (503, nothing
        # charged), never double it.
        failed = [a for a in answers if a.status != 200]
        assert all(a.status == 503 and not a.cost for a in failed), failed
        spent = sum(a.cost for a in ok)
        m = settled(db, email, spent, len(ok))
        assert (m["spent"], m["requests"]) == (spent, len(ok))
        assert_consistent(m)
        gw.stop()
        m = month_doc(db, email)
        assert (m["spent"], m["requests"]) == (spent, len(ok))
        assert_returned(m)
    finally:
        gw.stop()
        relay.stop()


# ------------------------------------------------------------ sums under load

USERS = 20
REQUESTS = 10_000
CONCURRENCY = 64


@pytest.mark.parametrize("lease", ["off", "on"])
def test_sums_equal_over_two_hosts_under_load(make_gateway, up, lease):
    """10,000 chat requests at concurrency 64 over two hosts on one store,
    20 users, random usage: per user, the cost headers the clients got add
    up to the request records' costs and to the month's spent, and the
    answered requests to the month's requests. Two users have caps that
    stop them part way (refusals cost and count nothing, spent stays under
    the cap), and a few requests fail at the provider (free, not counted).
    A small lease (AIProxyLeaseSize 0.001, some twenty requests' ceilings)
    makes each host grow each user's lease many times. After both hosts
    stop, nothing is reserved and no lease is left."""
    hosts = start_hosts(make_gateway, lease, n=2, size="0.001")
    db = database(hosts[0])
    rng = random.Random(1414)
    users = [new_email("sum%02d" % i) for i in range(USERS)]
    b = body("the sums must agree")
    c = ceiling(b)
    caps = {users[0]: 100 * c + 12345, users[1]: 60 * c}
    for email, cap in caps.items():
        hosts[0].set_cap(email, cap)
    jobs = []
    for i in range(REQUESTS):
        email = users[i % USERS]
        extra = random_usage(rng, b)
        if rng.random() < 0.02:
            extra["X-Fake-Status"] = "400"      # the provider refuses: $0
        jobs.append((hosts[i % 2], email, b, extra))
    answers, took = post_all(jobs, CONCURRENCY)
    print("%d requests in %.1f s (%.0f/s)" % (REQUESTS, took, REQUESTS / took))

    assert [a for a in answers if a.error] == []
    assert {a.status for a in answers} <= {200, 400, 429}
    spent, counted, refused = {}, {}, {}
    for (gw, email, _, extra), a in zip(jobs, answers):
        spent[email] = spent.get(email, 0) + a.cost
        counted[email] = counted.get(email, 0) + (a.status == 200)
        refused[email] = refused.get(email, 0) + (a.status == 429)
        if a.status == 400:
            assert a.cost == 0
        if a.status == 429:
            assert (a.code, a.cost) == ("insufficient_quota", 0)
    for email in users:
        assert (refused[email] > 0) == (email in caps), (email, refused[email])
    assert len(chats_seen(up)) == sum(a.status != 429 for a in answers)

    for email in users:
        m = settled(db, email, spent[email], counted[email])
        assert (m["spent"], m["requests"]) == (spent[email], counted[email]), email
        assert_consistent(m, caps.get(email))
    for gw in hosts:
        gw.wait_records()
    records = {}
    for d in db.requests.find({"email": {"$in": users}}):
        records.setdefault(d["email"], []).append(d)
    for email in users:
        recs = records[email]
        assert sum(d["cost"] for d in recs) == spent[email], email
        assert sum(d["status"] == 200 for d in recs) == counted[email], email
        assert not any(d["estimated"] for d in recs), email

    for gw in hosts:
        gw.stop()
    for email in users:
        m = month_doc(db, email)
        # The last flush at the stop charged nothing twice.
        assert (m["spent"], m["requests"]) == (spent[email], counted[email]), email
        assert_returned(m)
        if email in caps:
            assert m["spent"] <= caps[email]


# ------------------------------------------------------------ crashes

def connections_by_child(gw):
    """{child pid: established client connections it holds} (ss -tnp)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established",
                          "( sport = :%d )" % gw.port],
                         capture_output=True, text=True, check=True).stdout
    by = {}
    for pid in re.findall(r"pid=(\d+)", out):
        by[int(pid)] = by.get(int(pid), 0) + 1
    children = set(gw.children())
    return {p: n for p, n in by.items() if p in children}


def sweep_expired_holds(gw, db, emails):
    """Today's code (no lease): holds of a dead child stay until they
    expire (AIProxyHoldTTL); then a reservation that finds the month full
    sweeps them. A cap of 1 pico-dollar makes any request find it full."""
    xs = [h["x"] for e in emails for h in (month_doc(db, e).get("holds") or {}).values()]
    if xs:
        time.sleep(max(0, max(xs) / 1000 + 0.5 - time.time()))
    with httpx.Client() as client:
        for e in emails:
            # Not gw.set_cap(), which waits for records lost with the child.
            db.users.update_one({"_id": e}, {"$set": {"cap": Int64(1)}}, upsert=True)
            b = body("sweep")
            assert post(client, gw, e, b).status == 429


@pytest.mark.parametrize("lease", ["off", "on"])
def test_child_killed_under_load(make_gateway, up, lease):
    """kill -9 of one child while a user's slow requests are in flight on
    every child and another user keeps up a steady load. Nothing settled
    is lost; each request in flight in the dead child is charged its
    ceiling, as an estimated record; so the steady user's month, records
    and cost headers still agree exactly. The busy user's requests cut
    mid-way (records queued in the dead child are lost) are bounded: each
    cost at most its ceiling."""
    [gw] = start_hosts(make_gateway, lease, extra="AIProxyHoldTTL 10\n")
    db = database(gw)
    rng = random.Random(99)
    steady, busy = new_email("steady"), new_email("busy")
    b = body("killed child")
    c = ceiling(b)

    # Settled before the kill, with every record written.
    before, _ = post_all([(gw, steady, b, random_usage(rng, b)) for _ in range(300)], 16)
    assert all(a.status == 200 for a in before), before
    gw.wait_records()

    # Slow requests, each on its own connection, all at the provider.
    slow_n = 24
    slow_extra = [dict(random_usage(rng, b), **{"X-Fake-Delay-Ms": "6000"})
                  for _ in range(slow_n)]

    pool = concurrent.futures.ThreadPoolExecutor(slow_n)
    slow_futures = [pool.submit(post_once, gw, steady, b, e) for e in slow_extra]
    wait_for(lambda: len(chats_seen(up, "X-Fake-Delay-Ms")) == slow_n, 10,
             "the slow requests to reach the provider")
    by_child = connections_by_child(gw)
    victim = max(by_child, key=by_child.get)
    assert sum(by_child.values()) == slow_n, by_child

    # The busy user's load goes on across the kill.
    stop_busy = threading.Event()

    def busy_load():
        out = []
        with httpx.Client() as client:
            while not stop_busy.is_set():
                out.append(post(client, gw, busy, b, random_usage(rng, b)))
        return out

    busy_joins = [in_background(busy_load) for _ in range(8)]
    time.sleep(0.5)
    if lease == "on":
        gw.expect_log(r"AIP02303: request \w+ of \S+ was in flight in a child that died")
    gw.kill_child(victim)
    time.sleep(1)
    stop_busy.set()
    busy_answers = [a for j in busy_joins for a in j()]
    slow_answers = [f.result(timeout=30) for f in slow_futures]
    pool.shutdown()

    dead = [a for a in slow_answers if a.error]
    survived = [a for a in slow_answers if not a.error]
    # Every slow request on the victim died with it; the others finished.
    assert len(dead) == by_child[victim], (by_child, victim, slow_answers)
    assert all(a.status == 200 for a in survived), survived

    if lease == "off":
        sweep_expired_holds(gw, db, [steady, busy])
    paid = [a.cost for a in before + survived]
    spent = sum(paid) + len(dead) * c
    m = settled(db, steady, spent, len(paid) + len(dead), timeout=SETTLE_S + 5)
    assert (m["spent"], m["requests"]) == (spent, len(paid) + len(dead))
    assert_consistent(m)
    # Not gw.wait_records(): /api/stats counts the records lost with the
    # dead child as pending for ever.
    wait_for(lambda: db.requests.count_documents({"email": steady}) >= m["requests"],
             SETTLE_S, "the steady user's records")
    recs = list(db.requests.find({"email": steady}))
    estimated = [d for d in recs if d["estimated"]]
    assert [d["cost"] for d in estimated] == [c] * len(dead)
    assert sorted(d["cost"] for d in recs if not d["estimated"]) == sorted(paid)

    ok = [a for a in busy_answers if a.status == 200]
    cut = [a for a in busy_answers if a.error]
    assert ok and all(a.status == 200 or a.error for a in busy_answers), busy_answers
    m = month_doc(db, busy)
    lo, hi = sum(a.cost for a in ok), sum(a.cost for a in ok) + len(cut) * c
    deadline = time.time() + SETTLE_S
    while not (lo <= m["spent"] <= hi and m["requests"] >= len(ok)) and \
            time.time() < deadline:
        time.sleep(0.05)
        m = month_doc(db, busy)
    assert lo <= m["spent"] <= hi, (lo, m, hi)
    assert len(ok) <= m["requests"] <= len(ok) + len(cut)

    gw.stop()
    m = month_doc(db, steady)
    assert (m["spent"], m["requests"]) == (spent, len(paid) + len(dead))
    assert_returned(m)
    m = month_doc(db, busy)
    assert lo <= m["spent"] <= hi, (lo, m, hi)
    assert_returned(m)


@pytest.mark.parametrize("after", ["other-host", "restarted"])
def test_whole_httpd_killed_then_its_lease_expires_and_is_swept(make_gateway, up, after):
    """kill -9 of a whole host. What it flushed stays; at most the spend
    of its last flush interval is lost. Its lease stays in the store, and
    keeps its room, until AIProxyLeaseTTL after its last renewal; then a
    request that needs the room sweeps it: charged f (its ceilings in
    flight at its last flush), the rest released, and the request
    admitted. The request comes from another host on the store, or from
    the same host restarted (same AIProxyHostId, as after a crash with
    the default, the hostname): its dead lease is not mistaken for its
    own."""
    ttl = 4     # time to start the restarted host while the lease lives
    if after == "other-host":
        a_host, b_host = start_hosts(make_gateway, "on", n=2, ttl=ttl)
        b_name = "host-b"
    else:
        [a_host] = start_hosts(make_gateway, "on", ttl=ttl)
        b_name = "host-a"
    db = database(a_host)
    email = new_email("crash")
    b = body("whole httpd killed")
    c = ceiling(b)
    client = httpx.Client()

    # Settled and flushed.
    paid = [post(client, a_host, email, b, full_usage(b)) for _ in range(10)]
    assert all(a.status == 200 for a in paid), paid
    m = settled(db, email, 10 * c, 10)
    assert (m["spent"], m["requests"]) == (10 * c, 10)

    # Three requests that never end, in flight at a flush.
    hanging = [in_background(post_once, a_host, email, b, {"X-Fake-Hang": "1"})
               for _ in range(3)]
    wait_for(lambda: len(chats_seen(up, "X-Fake-Hang")) == 3, 10,
             "the hanging requests to reach the provider")
    wait_for(lambda: [h.get("f") for h in leases(month_doc(db, email)).values()] == [3 * c],
             SETTLE_S, "a flush with the three in flight")

    # Spend up to the moment of the kill, some of it maybe not flushed.
    recent = []
    for _ in range(5):
        a = post(client, a_host, email, b, full_usage(b))
        assert a.status == 200, a
        recent.append((time.time(), a.cost))
    a_host.kill()
    killed_at = time.time()
    if after == "restarted":
        b_host = make_gateway(host_conf("on", b_name, ttl=ttl), db=a_host.db_name).start()
    for j in hanging:
        assert j().error is not None

    m = month_doc(db, email)
    [(lid, lease)] = leases(m).items()
    assert lease["h"] == "host-a"
    told = 15 * c
    lost = told - m["spent"]
    window = 2 * FLUSH_MS / 1000 + 0.2
    assert 0 <= lost <= sum(cost for t, cost in recent if t > killed_at - window), \
        (told, m)
    # In flight at its last flush: the three, and maybe one of the five.
    f = lease["f"]
    assert f in (3 * c, 4 * c), lease
    # The lease had room to spare (the default cap is far above it).
    assert lease["a"] > f + c, lease
    assert_consistent(m)
    spent_at_kill = m["spent"]

    # Before it expires the lease still holds its room: with a cap that
    # leaves less than a ceiling beside it, the month is full.
    cap = m["load"] + c - 1
    b_host.set_cap(email, cap)
    assert time.time() * 1000 < lease["x"] - 300, "too slow to see the live lease"
    refused = post(client, b_host, email, b, full_usage(b))
    assert (refused.status, refused.code) == (429, "insufficient_quota")
    assert lid in leases(month_doc(db, email))

    # Once expired, a request that needs the room sweeps the lease.
    time.sleep(max(0, lease["x"] / 1000 + 0.5 - time.time()))
    a = post(client, b_host, email, b, full_usage(b))
    assert a.status == 200, a
    m = month_doc(db, email)
    assert lid not in (m.get("holds") or {}), m
    assert all(h["h"] == b_name for h in leases(m).values()), m
    assert_consistent(m, cap)
    expected = spent_at_kill + f + a.cost
    deadline = time.time() + SETTLE_S
    while m["spent"] != expected and time.time() < deadline:
        time.sleep(0.05)
        m = month_doc(db, email)
    assert m["spent"] == expected, (m, spent_at_kill, f, a.cost)
    client.close()
    b_host.stop()
    m = month_doc(db, email)
    assert m["spent"] == expected
    assert_returned(m)
    assert m["holds"] == {}, m
