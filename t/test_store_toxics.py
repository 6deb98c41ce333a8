"""Network faults between the gateway and the store, made by Toxiproxy, while
clients keep sending requests through budget leases: store replies reset
after the command was sent (so it landed, and nobody heard), replies
delayed past the gateway's socket timeout, and the store cut off entirely
in the middle of flushing. Afterwards the store holds exactly what the
clients were told they paid, request by request: nothing counted twice,
nothing lost (a stopped gateway writes everything and gives its leases
back)."""
import re
import threading
import time
from decimal import Decimal

import httpx
import pytest

from conftest import Gateway
from helpers import auth, new_email
from toxiproxy import Toxiproxy

CHAT = "/openai/v1/chat/completions"
LEASE = ("AIProxyLeaseSize 0.05\nAIProxyLeaseFlush 100\nAIProxyHostId toxic\n"
         "AIProxyUserCacheTTL 30\n")
PICO = Decimal(10) ** 12

# What a store that resets, stalls or vanishes makes the driver and the
# gateway say.
pytestmark = pytest.mark.expect_log(r"AIP01001", r"AIP01101", r"AIP02302",
                                    r"AIP01106", r"AIP01201", r"AIP01206",
                                    r"AIP01107")


class ProxiedStore:
    """The session's store, reached by the gateway through Toxiproxy; the
    tests read it directly."""

    def __init__(self, store, port):
        self.store = store
        self.uri = "mongodb://127.0.0.1:%d" % port

    def client(self):
        return self.store.client()


@pytest.fixture
def toxic(store, upstream):
    tp = Toxiproxy()
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    pport = tp.proxy("store", "%s:%s" % (host, port))
    gw = Gateway(ProxiedStore(store, pport), upstream, extra_conf=LEASE)
    gw.start()
    yield gw, tp
    gw.stop()
    tp.stop()


class Load:
    """Clients sending chats in a loop; every answer's status and cost."""

    def __init__(self, gw, emails, threads=4):
        self.gw, self.emails = gw, emails
        self.answers = []           # (email, status, cost in pico)
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(threads)]

    def run(self, i):
        n = 0
        with httpx.Client(timeout=30) as c:
            while not self.stopping:
                email = self.emails[(i + n) % len(self.emails)]
                n += 1
                r = c.post(self.gw.url(CHAT), headers=auth(email), json={
                    "model": "gpt-4o-mini", "max_tokens": 20,
                    "messages": [{"role": "user", "content": "fault %d" % n}]})
                cost = int(Decimal(r.headers["cost"]) * PICO) \
                    if r.status_code == 200 else 0
                with self.lock:
                    self.answers.append((email, r.status_code, cost))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        for t in self.threads:
            t.join()

    def paid(self, email):
        return sum(c for e, s, c in self.answers if e == email and s == 200)

    def answered(self, email):
        return sum(1 for e, s, c in self.answers if e == email and s == 200)


def month(gw, email):
    return gw.store.client()[gw.db_name].months.find_one({"email": email})


def assert_exact(gw, load, emails, timeout=20):
    """Each user's month equals what the clients were told, once written;
    and after the gateway stops, no lease is left."""
    # The fault reached the gateway: it saw the store fail.
    with open(gw.var + "/error.log") as f:
        assert re.search(r"AIP02302|mongoc stream|Failed to (read|buffer|connect)",
                         f.read())
    deadline = time.time() + timeout
    while True:
        docs = {e: month(gw, e) for e in emails}
        if all(d and d["spent"] == load.paid(e) and
               d["requests"] == load.answered(e) for e, d in docs.items()):
            break
        if time.time() > deadline:
            raise AssertionError({e: (d and (d["spent"], d["requests"]),
                                      load.paid(e), load.answered(e))
                                  for e, d in docs.items()})
        time.sleep(0.1)
    records = gw.db().requests
    for e in emails:
        recs = list(records.find({"email": e}))
        assert len(recs) == load.answered(e)
        assert sum(r["cost"] for r in recs) == load.paid(e)
    gw.stop()
    for e in emails:
        d = month(gw, e)
        assert (d["spent"], d["requests"]) == (load.paid(e), load.answered(e))
        assert d["reserved"] == 0
        assert not [h for h in d["holds"].values() if h.get("l")]


def wait_served(load, emails, timeout=10):
    """Until every user has an answer: each holds a lease now."""
    deadline = time.time() + timeout
    while not all(load.answered(e) for e in emails):
        assert time.time() < deadline, "no answers before the fault"
        time.sleep(0.05)


def test_replies_reset_after_the_store_applied_the_write(toxic):
    """The store applies each write and the connection is reset before its
    reply comes back: the gateway cannot know the write landed, keeps it
    pending and sends it again unchanged, which the store recognises."""
    gw, tp = toxic
    emails = [new_email("reset") for _ in range(3)]
    with Load(gw, emails) as load:
        wait_served(load, emails)
        tp.add("store", "reset", "reset_peer", timeout=0)
        time.sleep(2)
        tp.remove("store", "reset")
        time.sleep(1)
    assert_exact(gw, load, emails)


def test_replies_delayed_past_the_socket_timeout(toxic):
    """Replies come 8 s late, past the 6 s the gateway waits (4 x
    AIProxyStoreTimeout): the writes land, the gateway gives up on them and
    sends them again later, unchanged; requests are meanwhile admitted from
    the leases."""
    gw, tp = toxic
    emails = [new_email("slow") for _ in range(3)]
    with Load(gw, emails) as load:
        wait_served(load, emails)
        before = len(load.answers)
        tp.add("store", "slow", "latency", latency=8000)
        time.sleep(7)
        during = [a for a in load.answers[before:] if a[1] == 200]
        tp.remove("store", "slow")
        time.sleep(1)
    # Leases kept serving while every store reply was late.
    assert during
    assert_exact(gw, load, emails, timeout=30)


def test_store_cut_mid_flush(toxic):
    """The store vanishes while leases are being written: live leases keep
    serving up to their size, a user without one is refused 503, and once
    the store is back the flusher writes what waited, once."""
    gw, tp = toxic
    emails = [new_email("cut") for _ in range(3)]
    with Load(gw, emails) as load:
        wait_served(load, emails)
        tp.enable("store", False)
        before = len(load.answers)
        time.sleep(0.3)
        newcomer = httpx.post(gw.url(CHAT), headers=auth(new_email("new")),
                              timeout=30, json={
                                  "model": "gpt-4o-mini", "max_tokens": 20,
                                  "messages": [{"role": "user", "content": "hi"}]})
        time.sleep(1.5)
        during = [a for a in load.answers[before:] if a[1] == 200]
        tp.enable("store", True)
        time.sleep(1)
    assert newcomer.status_code == 503, newcomer.text
    assert newcomer.json()["error"]["code"] == "store_unavailable"
    assert during
    assert_exact(gw, load, emails, timeout=30)
