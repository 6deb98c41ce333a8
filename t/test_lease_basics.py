"""Budget leases on one host: a user's requests are admitted from a slice of
their budget this host holds in the store (a hold named by the host, `l:
true`), settled locally and written in batches; the money in the store, the
headers and the records agree once written; idle leases go back, and so
does every lease when the server stops."""
import time
from decimal import Decimal

import httpx
import pytest

from conftest import PRICES, Gateway
from helpers import auth, new_email, stats

CHAT = "/openai/v1/chat/completions"
LEASE = "AIProxyLeaseSize 0.50\nAIProxyLeaseFlush 100\nAIProxyHostId test-a\n"
PICO = Decimal(10) ** 12


def chat(gw, email, **extra):
    body = {"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": "lease me"}]}
    body.update(extra)
    return httpx.post(gw.url(CHAT), json=body, headers=auth(email), timeout=10)


def pico(header):
    return int(Decimal(header) * PICO)


def month_of(gw, email):
    return gw.store.client()[gw.db_name].months.find_one({"email": email})


def leases(doc):
    return {k: v for k, v in (doc or {}).get("holds", {}).items() if v.get("l")}


def wait_month(gw, email, spent, requests, timeout=10):
    """The month document once the host wrote what it spent."""
    deadline = time.time() + timeout
    while True:
        doc = month_of(gw, email)
        if doc and doc["spent"] == spent and doc["requests"] == requests:
            return doc
        if time.time() > deadline:
            raise AssertionError("month never reached spent=%d requests=%d: %r"
                                 % (spent, requests, doc))
        time.sleep(0.05)


@pytest.fixture
def leased(make_gateway):
    return make_gateway(LEASE).start()


def test_requests_are_admitted_from_a_lease_and_written_in_batches(leased):
    email = new_email("lease")
    costs = []
    for _ in range(5):
        r = chat(leased, email)
        assert r.status_code == 200, r.text
        costs.append(pico(r.headers["cost"]))
        # Exact on one host: the store's figure plus what this host spent.
        assert pico(r.headers["monthlyCost"]) == sum(costs)
        assert int(r.headers["monthlyRequests"]) == len(costs)
    doc = wait_month(leased, email, sum(costs), 5)
    [(name, hold)] = leases(doc).items()
    assert name.startswith("L-test-a-") and hold["h"] == "test-a"
    # One slice of $0.50 covered all five: the hold is what is left of it,
    # and load is spent plus that.
    assert hold["a"] == pico("0.50") - sum(costs)
    assert doc["reserved"] == hold["a"]
    assert doc["load"] == doc["spent"] + doc["reserved"]
    records = list(leased.db().requests.find({"email": email}))
    assert sorted(x["cost"] for x in records) == sorted(costs)


def test_a_request_larger_than_the_slice_takes_what_it_needs(make_gateway):
    gw = make_gateway("AIProxyLeaseSize 0.000001\nAIProxyLeaseFlush 100\n").start()
    email = new_email("big")
    r = chat(gw, email, max_tokens=1000)
    assert r.status_code == 200, r.text
    doc = wait_month(gw, email, pico(r.headers["cost"]), 1)
    # The lease grew to the request's ceiling, not to the slice size.
    ceiling = 1000 * PRICES["gpt-4o-mini"]["output"]
    [hold] = leases(doc).values()
    assert hold["a"] + doc["spent"] >= ceiling


def test_idle_leases_go_back(make_gateway):
    gw = make_gateway(LEASE + "AIProxyLeaseIdle 1\n").start()
    email = new_email("idle")
    r = chat(gw, email)
    assert r.status_code == 200
    cost = pico(r.headers["cost"])
    deadline = time.time() + 10
    while leases(month_of(gw, email)) and time.time() < deadline:
        time.sleep(0.1)
    doc = month_of(gw, email)
    assert leases(doc) == {}
    assert doc["reserved"] == 0 and doc["load"] == cost == doc["spent"]


def test_a_stopped_server_writes_everything_and_gives_leases_back(make_gateway):
    gw = make_gateway(LEASE.replace("100", "60000")).start()   # no timely flush
    email = new_email("stop")
    total = 0
    for _ in range(3):
        r = chat(gw, email)
        assert r.status_code == 200
        total += pico(r.headers["cost"])
    gw.stop()
    doc = month_of(gw, email)
    assert (doc["spent"], doc["requests"]) == (total, 3)
    assert leases(doc) == {} and doc["reserved"] == 0


@pytest.fixture
def relayed(store, upstream):
    """A leasing gateway that reaches the store through t/store_relay.py
    (which counts messages and can lose a reply)."""
    from store_relay import StoreRelay
    from test_ledger_faults import RelayedStore
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    relay = StoreRelay(host, int(port))
    gw = Gateway(RelayedStore(store, relay), upstream,
                 extra_conf=LEASE.replace("100", "60000") + "AIProxyUserCacheTTL 60\n")
    gw.start()
    yield gw, relay
    gw.stop()
    relay.stop()


def test_the_request_path_makes_no_store_round_trip(relayed):
    gw, relay = relayed
    email = new_email("quiet")
    # The month's first request takes the lease (and makes the month).
    r = chat(gw, email)
    assert r.status_code == 200
    total = pico(r.headers["cost"])
    relay.watch(b"findAndModify")
    relay.watch(b"update")
    relay.watch(b"months")
    before = stats(gw)
    for _ in range(30):
        r = chat(gw, email)
        assert r.status_code == 200
        total += pico(r.headers["cost"])
    # Thirty more were admitted and settled from that slice in shared
    # memory: no store write at all (no flush is due for a minute; records
    # go to the writer, which inserts them in batches), and the months
    # collection is not even read. (Users' settings are read once per child
    # and AIProxyUserCacheTTL.)
    assert relay.count(b"findAndModify") == 0
    assert relay.count(b"update") == 0
    assert relay.count(b"months") == 0
    after = stats(gw)
    assert after["leased"] - before["leased"] == 30
    assert after["lease_writes"] == before["lease_writes"]
    gw.stop()
    doc = month_of(gw, email)
    assert (doc["spent"], doc["requests"]) == (total, 31)


@pytest.mark.expect_log(r"AIP01001", r"AIP02302")
def test_a_lease_write_whose_reply_is_lost_counts_once(store, upstream):
    from store_relay import StoreRelay
    from test_ledger_faults import RelayedStore
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    relay = StoreRelay(host, int(port))
    gw = Gateway(RelayedStore(store, relay), upstream, extra_conf=LEASE)
    try:
        gw.start()
        email = new_email("lost")
        total = 0
        r = chat(gw, email)
        total += pico(r.headers["cost"])
        wait_month(gw, email, total, 1)
        # The next write of this lease lands, and its reply is lost.
        relay.drop_reply(b"L-test-a-", email.encode())
        for _ in range(3):
            r = chat(gw, email)
            assert r.status_code == 200
            total += pico(r.headers["cost"])
        deadline = time.time() + 10
        while relay.dropped < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert relay.dropped == 1
        # Sent again, the write finds its sequence moved on: counted once.
        doc = wait_month(gw, email, total, 4)
        time.sleep(0.5)
        assert month_of(gw, email)["spent"] == total
        [hold] = leases(doc).values()
        assert hold["a"] + doc["spent"] == pico("0.50")
    finally:
        gw.stop()
        relay.stop()


def test_a_lowered_cap_takes_the_lease_back(leased):
    """With AIProxyUserCacheTTL 0 (the tests' setting) a cap change is seen
    by the next request: the lease gives back what it took under the old
    cap and grows again only under the new one."""
    email = new_email("lower")
    first = chat(leased, email)
    assert first.status_code == 200
    spent = pico(first.headers["cost"])
    # Room for nothing more: the slice the lease holds must not be spent.
    leased.set_cap(email, spent)
    r = chat(leased, email)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "insufficient_quota"
    doc = wait_month(leased, email, spent, 1)
    assert sum(h["a"] for h in leases(doc).values()) == 0
    assert doc["load"] == spent
    # Raised again: admitted.
    leased.set_cap(email, pico("2"))
    assert chat(leased, email).status_code == 200


def test_a_revoked_user_is_refused_though_their_lease_has_room(leased):
    email = new_email("revoked")
    assert chat(leased, email).status_code == 200
    leased.db().users.update_one({"_id": email}, {"$set": {
        "revoked_at": int(time.time()) + 5}}, upsert=True)
    r = chat(leased, email)
    assert r.status_code == 401, r.text


def test_streams_are_metered_on_a_lease(leased):
    """A stream (the openai SDK) admitted from a lease is settled locally at
    the cost of its final usage, written with the lease's next write."""
    import openai
    from helpers import chat_cost
    from conftest import make_token
    email = new_email("stream")
    client = openai.OpenAI(base_url=leased.openai_base, api_key=make_token(email))
    for _ in range(3):
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": "count to three please"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks
                       if c.choices) == "This is a fake reply."
    each = chat_cost("gpt-4o-mini", 4, 5)
    doc = wait_month(leased, email, 3 * each, 3)
    assert leases(doc)
    records = list(leased.db().requests.find({"email": email}))
    assert [r["cost"] for r in records] == [each] * 3
    assert not any(r["estimated"] for r in records)


def test_course_requests_make_no_store_round_trip_either(relayed):
    """A course token on a lease: the course's budget is leased like the
    user's cap, so once both leases are taken, requests charged to the
    course write nothing to the store and read no month either."""
    import datetime
    from bson import Int64
    from conftest import make_token
    gw, relay = relayed
    db = gw.db()
    import secrets
    cid = "lb-" + secrets.token_hex(4)
    db.courses.insert_one({"_id": cid, "name": cid, "budget": Int64(10 ** 13),
                           "instructors": []})
    email = new_email("course-quiet")
    db.members.insert_one({"_id": "%s|%s" % (cid, email), "course": cid,
                           "who": email, "added_by": "test",
                           "added": datetime.datetime.now(datetime.timezone.utc)})
    h = {"Authorization": "Bearer " + make_token(email, course=cid)}
    body = {"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": "lease the course"}]}

    def chat(gw, email, headers):
        return httpx.post(gw.url(CHAT), json=body, headers=headers, timeout=10)

    r = chat(gw, email, headers=h)
    assert r.status_code == 200, r.text
    total = pico(r.headers["cost"])
    relay.watch(b"findAndModify")
    relay.watch(b"update")
    relay.watch(b"months")
    for _ in range(30):
        r = chat(gw, email, headers=h)
        assert r.status_code == 200
        total += pico(r.headers["cost"])
    assert relay.count(b"findAndModify") == 0
    assert relay.count(b"update") == 0
    assert relay.count(b"months") == 0
    gw.stop()
    assert (month_of(gw, email)["spent"], month_of(gw, email)["requests"]) == (total, 31)
    course = db.months.find_one({"email": "#" + cid})
    assert (course["spent"], course["requests"]) == (total, 31)
