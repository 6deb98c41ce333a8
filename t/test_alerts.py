"""Threshold alerts (issue 15): with AIProxyAlertWebhook set, a thread in
the gateway (one child per host at a time) finds the accounts of the month
that crossed a threshold of their cap (users) or budget (courses), records
each crossing once in the store's `alerts` (_id account|month|pct) and POSTs
it as JSON to the webhook, retrying with backoff until it is taken. A
loopback receiver here records what arrives; it can fail the first POSTs or
hang past the gateway's 5 s timeout. Spending is real (the openai SDK
through the gateway to the fake upstream); course months, which the course
request path writes, are seeded in the store directly."""
import datetime
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from bson import Int64

from conftest import free_port, make_token

MONTH = time.strftime("%Y-%m", time.gmtime())
MODEL = "gpt-4o-mini"
# The webhook URL's secret part (Slack hook URLs carry one): never logged.
HOOK_SECRET = "hooksecret-" + secrets.token_hex(8)
# Failed deliveries are logged (warn); a test that causes them declares it.
NOT_DELIVERED = r"AIP15508"


class Receiver:
    """A webhook on loopback recording every POST: (path, body, status
    answered). fail_first N: the first N POSTs get 500; hang_s: each POST
    is answered only after that many seconds."""

    def __init__(self, fail_first=0, hang_s=0):
        self.posts = []
        self.fail_first = fail_first
        self.hang_s = hang_s
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with rec.lock:
                    status = 500 if len(rec.posts) < rec.fail_first else 200
                    rec.posts.append({"path": self.path, "raw": raw, "status": status,
                                      "type": self.headers.get("Content-Type"),
                                      "time": time.time()})
                if rec.hang_s:
                    time.sleep(rec.hang_s)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass    # the gateway gave up waiting

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/services/T000/B000/%s" % (self.port, HOOK_SECRET)

    def conf(self, interval=1, thresholds=None):
        lines = ["AIProxyAlertWebhook %s" % self.url, "AIProxyAlertInterval %d" % interval]
        if thresholds:
            lines.append("AIProxyAlertThresholds " + " ".join(map(str, thresholds)))
        return "\n".join(lines) + "\n"

    def delivered(self):
        """The bodies answered 2xx, parsed."""
        with self.lock:
            return [json.loads(p["raw"]) for p in self.posts if p["status"] == 200]

    def wait(self, pred, timeout=20):
        """The delivered bodies once pred(bodies) holds; fails at the timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.delivered()
            if pred(got):
                return got
            time.sleep(0.1)
        raise AssertionError("receiver: condition not met; got %r" % self.posts)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def db_of(gw):
    return gw.store.client()[gw.db_name]


def new_user(prefix="alert"):
    return "%s-%s@example.com" % (prefix, secrets.token_hex(4))


def client_for(gw, email):
    """The openai SDK for email; every request is charged exactly its
    ceiling (the fake upstream reports as many prompt tokens as the body
    has bytes, and all of max_tokens), so identical requests cost the same
    and a cap of k of them is reached exactly."""
    def exact(request):
        request.headers["X-Fake-Usage"] = json.dumps(
            {"prompt_tokens": len(request.content), "completion_tokens": 20})

    http = httpx.Client(event_hooks={"request": [exact]}, timeout=30)
    return openai.OpenAI(base_url=gw.openai_base, api_key=make_token(email),
                         max_retries=0, http_client=http)


def chat(client):
    return client.chat.completions.create(
        model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "spend " * 50}])


def spent(gw, account):
    return (db_of(gw).months.find_one({"_id": "%s|%s" % (account, MONTH)}) or {}).get("spent", 0)


def one_request_cost(gw, client, email):
    """Spends one request and returns what it cost."""
    chat(client)
    deadline = time.time() + 10
    while time.time() < deadline and not spent(gw, email):
        time.sleep(0.05)
    return spent(gw, email)


def by_threshold(bodies, account):
    return sorted(b["threshold"] for b in bodies if b["account"] == account)


def usd(pico):
    s = "%d.%012d" % divmod(pico, 10 ** 12)
    s = s.rstrip("0")
    whole, frac = s.split(".")
    return whole + "." + frac.ljust(2, "0")


def seed_month(db, account, month, spent_pico):
    db.months.insert_one({"_id": "%s|%s" % (account, month), "email": account,
                          "month": month, "spent": Int64(spent_pico),
                          "reserved": Int64(0), "load": Int64(spent_pico),
                          "requests": Int64(1), "holds": {}, "done": []})


def seed_course(db, budget, alerts=None):
    cid = "c-" + secrets.token_hex(4)
    doc = {"_id": cid, "name": "Course " + cid, "budget": Int64(budget),
           "instructors": [], "created": datetime.datetime.now(datetime.timezone.utc)}
    if alerts is not None:
        doc["alerts"] = alerts
    db.courses.insert_one(doc)
    return cid


# ------------------------------------------------------------------ users

def test_user_crossing_80_then_100_is_posted_once_each(make_gateway, receiver, up):
    """Real spend: 4 of 5 equal requests reach 80% of the user's cap (one
    POST, threshold 80), the 5th reaches 100% (one more, threshold 100);
    a few more scans post nothing again."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    email = new_user()
    client = client_for(gw, email)
    c = one_request_cost(gw, client, email)
    gw.set_cap(email, 5 * c)
    for _ in range(3):
        chat(client)
    got = rx.wait(lambda b: by_threshold(b, email) == [80])
    time.sleep(2.5)     # more scans: no 100 yet, no second 80
    assert by_threshold(rx.delivered(), email) == [80]
    body = got[0]
    assert body == {"text": body["text"], "account": email, "kind": "user",
                    "month": MONTH, "threshold": 80, "spent": usd(4 * c),
                    "cap": usd(5 * c)}
    assert email in body["text"] and usd(5 * c) in body["text"]
    assert rx.posts[0]["type"] == "application/json"
    chat(client)
    rx.wait(lambda b: by_threshold(b, email) == [80, 100])
    time.sleep(3)
    assert by_threshold(rx.delivered(), email) == [80, 100]
    # The store: one document per threshold, marked sent.
    docs = {d["_id"]: d for d in db_of(gw).alerts.find({"account": email})}
    assert set(docs) == {"%s|%s|80" % (email, MONTH), "%s|%s|100" % (email, MONTH)}
    for d in docs.values():
        assert d["sent"] is not None and d["attempts"] == 1 and d["kind"] == "user"
    # The secret in the webhook URL never reaches the log; its host does.
    log = gw.error_log()
    assert HOOK_SECRET not in log
    assert "delivered to 127.0.0.1" in log
    # One child works at a time: both came from the same process.
    pids = set(re.findall(r"\[pid (\d+):tid \d+\] AIP15506", log))
    assert len(pids) == 1, pids


def test_domain_cap_and_default_cap_apply(make_gateway, receiver, up):
    """A user's cap by the same policy as requests: the @domain's cap when
    the email has none, else AIProxyMonthlyCap (2.00 in the tests)."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    dom = "dom-%s.test" % secrets.token_hex(3)
    a, b = "a@" + dom, new_user("dflt")
    db.users.insert_one({"_id": "@" + dom, "cap": Int64(10 ** 12)})
    seed_month(db, a, MONTH, 85 * 10 ** 10)            # 0.85 of 1.00
    seed_month(db, b, MONTH, 170 * 10 ** 10)           # 1.70 of 2.00
    got = rx.wait(lambda x: by_threshold(x, a) == [80] and by_threshold(x, b) == [80])
    time.sleep(2)
    got = rx.delivered()
    assert by_threshold(got, a) == [80] and by_threshold(got, b) == [80]
    assert [x["cap"] for x in got if x["account"] == a] == ["1.00"]
    assert [x["cap"] for x in got if x["account"] == b] == ["2.00"]


def test_an_email_is_text_in_slack(make_gateway, receiver, up):
    """Slack reads <...> in "text" as a mention or a link: an email such as
    <!channel>@x would ping everyone. Its &, < and > are escaped there;
    the account field keeps the email as it is."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    who = "<!channel>&<https://evil.test>-%s@x.test" % secrets.token_hex(3)
    seed_month(db_of(gw), who, MONTH, 170 * 10 ** 10)           # 1.70 of 2.00
    got = rx.wait(lambda x: by_threshold(x, who) == [80])
    body = [x for x in got if x["account"] == who][0]
    assert "<" not in body["text"] and ">" not in body["text"]
    assert who.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        in body["text"]


def test_exactly_once_over_children_and_two_hosts(make_gateway, receiver, up):
    """Two gateways (each with several children) on one store: each
    threshold is posted once, whichever host sees it first."""
    rx = receiver()
    a = make_gateway(rx.conf()).start()
    b = make_gateway(rx.conf(), db=a.db_name).start()
    deadline = time.time() + 10
    while time.time() < deadline and (len(a.children()) < 2 or len(b.children()) < 2):
        time.sleep(0.1)
    assert len(a.children()) >= 2 and len(b.children()) >= 2
    users = [new_user("twohost") for _ in range(4)]
    db = db_of(a)
    for i, u in enumerate(users):
        seed_month(db, u, MONTH, 10 ** 12 * (i + 1))    # 1, 2, 3, 4 of 2.00
    want = {users[0]: [], users[1]: [80, 100], users[2]: [80, 100],
            users[3]: [80, 100]}
    # Real spend too, through both hosts, for a user who crosses 80 then 100.
    spender = new_user("spender")
    ca, cb = client_for(a, spender), client_for(b, spender)
    c = one_request_cost(a, ca, spender)
    a.set_cap(spender, 5 * c)
    for cl in (cb, ca, cb, ca):
        chat(cl)
    want[spender] = [80, 100]
    rx.wait(lambda got: all(by_threshold(got, u) == t for u, t in want.items()))
    time.sleep(4)      # several scans on both hosts: nothing more
    got = rx.delivered()
    for u, t in want.items():
        assert by_threshold(got, u) == t, (u, got)
    assert len(rx.posts) == sum(len(t) for t in want.values())


@pytest.mark.expect_log(NOT_DELIVERED)
def test_failed_posts_are_retried_and_delivered_once(make_gateway, receiver, up):
    """The webhook answers 500 twice: the alert is tried again (backing off
    from one interval), then taken once and never sent again."""
    rx = receiver(fail_first=2)
    gw = make_gateway(rx.conf()).start()
    email = new_user("retry")
    seed_month(db_of(gw), email, MONTH, 19 * 10 ** 11)  # 1.90 of 2.00: 80
    rx.wait(lambda got: by_threshold(got, email) == [80], timeout=30)
    time.sleep(3)
    assert [p["status"] for p in rx.posts] == [500, 500, 200]
    assert by_threshold(rx.delivered(), email) == [80]
    # Backing off: the second retry waited longer than the first.
    t = [p["time"] for p in rx.posts]
    assert t[1] - t[0] >= 0.9 and t[2] - t[1] >= 1.8, t
    doc = db_of(gw).alerts.find_one({"_id": "%s|%s|80" % (email, MONTH)})
    assert doc["attempts"] == 3 and doc["sent"] is not None
    assert "500" in doc["last_error"]
    assert HOOK_SECRET not in gw.error_log()


@pytest.mark.expect_log(NOT_DELIVERED)
def test_a_hanging_webhook_never_slows_requests(make_gateway, receiver, up):
    """The receiver holds every POST 8 s (past the gateway's 5 s timeout);
    meanwhile requests answer as fast as ever: delivery is not on their
    path. The timed-out POST is recorded as a failure, to be tried again."""
    rx = receiver(hang_s=8)
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    hung = [new_user("hung") for _ in range(3)]
    for u in hung:
        seed_month(db, u, MONTH, 3 * 10 ** 12)         # 80 and 100 each
    deadline = time.time() + 10
    while not rx.posts and time.time() < deadline:
        time.sleep(0.05)
    assert rx.posts, "no POST reached the receiver"
    email = new_user("fast")
    client = client_for(gw, email)
    times = []
    end = time.time() + 6
    while time.time() < end:
        t0 = time.time()
        chat(client)
        times.append(time.time() - t0)
    assert len(times) >= 10 and max(times) < 3.0, times
    # The hung POST timed out (5 s) and was recorded as a failure.
    deadline = time.time() + 10
    while time.time() < deadline:
        failed = list(db.alerts.find({"attempts": {"$gte": 1}, "sent": None}))
        if failed:
            break
        time.sleep(0.2)
    assert failed and all(d["last_error"] for d in failed), failed


# ------------------------------------------------------------------ courses

def test_course_budget_crossing_is_posted_as_course(make_gateway, receiver, up):
    """A course account ("#id") against its budget, with the course's own
    thresholds when it sets them, else the site's."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    own = seed_course(db, 10 * 10 ** 12, alerts=[50])
    site = seed_course(db, 10 * 10 ** 12)
    seed_month(db, "#" + own, MONTH, 6 * 10 ** 12)      # 60%: its 50 only
    seed_month(db, "#" + site, MONTH, 10 * 10 ** 12)    # 100%: 80 and 100
    got = rx.wait(lambda b: by_threshold(b, "#" + own) == [50]
                  and by_threshold(b, "#" + site) == [80, 100])
    time.sleep(2)
    got = rx.delivered()
    assert by_threshold(got, "#" + own) == [50]
    assert by_threshold(got, "#" + site) == [80, 100]
    body = [b for b in got if b["account"] == "#" + own][0]
    assert body == {"text": body["text"], "account": "#" + own, "kind": "course",
                    "course": own, "month": MONTH, "threshold": 50,
                    "spent": "6.00", "cap": "10.00"}
    assert own in body["text"]
    doc = db.alerts.find_one({"_id": "#%s|%s|50" % (own, MONTH)})
    assert doc["kind"] == "course" and doc["course"] == own


def test_course_gone_or_without_budget_posts_nothing(make_gateway, receiver, up):
    """A course month whose course was deleted, or whose budget is 0, has
    no percentage to cross; a course's own percentages out of range are
    skipped (and crash nothing)."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    zero = seed_course(db, 0)
    seed_month(db, "#" + zero, MONTH, 10 ** 12)
    seed_month(db, "#gone-" + secrets.token_hex(3), MONTH, 10 ** 12)
    # Percentages written to the store by hand outside 1-1000 are ignored.
    odd = seed_course(db, 10 * 10 ** 12, alerts=[0, -5, 5000, 50])
    seed_month(db, "#" + odd, MONTH, 6 * 10 ** 12)
    marker = new_user("marker")
    seed_month(db, marker, MONTH, 3 * 10 ** 12)
    rx.wait(lambda b: by_threshold(b, marker) == [80, 100]
            and by_threshold(b, "#" + odd) == [50])
    time.sleep(2)
    assert {b["account"] for b in rx.delivered()} == {marker, "#" + odd}
    assert by_threshold(rx.delivered(), "#" + odd) == [50]
    assert db.alerts.count_documents({"kind": "course"}) == 1


# ------------------------------------------------------------------ months

def test_another_month_is_ignored_and_this_month_starts_fresh(make_gateway, receiver, up):
    """Last month's spending (and its alerts) are not this month's: a user
    over the cap last month, already alerted then, is alerted again when
    this month crosses; a month document of another month alone raises
    nothing."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    old = "2020-01"
    was, only_old = new_user("was"), new_user("onlyold")
    seed_month(db, was, old, 5 * 10 ** 12)
    seed_month(db, only_old, old, 5 * 10 ** 12)
    now = datetime.datetime.now(datetime.timezone.utc)
    db.alerts.insert_one({"_id": "%s|%s|80" % (was, old), "account": was, "kind": "user",
                          "month": old, "pct": 80, "spent": Int64(5 * 10 ** 12),
                          "cap": Int64(2 * 10 ** 12), "created": now, "sent": now,
                          "attempts": 1, "next_try": now, "last_error": ""})
    seed_month(db, was, MONTH, 17 * 10 ** 11)            # 1.70 of 2.00
    got = rx.wait(lambda b: by_threshold(b, was) == [80])
    time.sleep(2)
    got = rx.delivered()
    assert [b["month"] for b in got] == [MONTH]
    assert by_threshold(got, only_old) == []
    assert db.alerts.count_documents({"account": only_old}) == 0


# ------------------------------------------------------------------ off

def test_no_webhook_no_alerts(make_gateway, up):
    """Without AIProxyAlertWebhook nothing is scanned or recorded."""
    gw = make_gateway("AIProxyAlertInterval 1\n").start()
    db = db_of(gw)
    email = new_user("nohook")
    seed_month(db, email, MONTH, 5 * 10 ** 12)
    client = client_for(gw, new_user("nohook2"))
    chat(client)
    time.sleep(3)
    assert db.alerts.count_documents({}) == 0


# ------------------------------------------------------------------ claims

def seed_alert(db, account, pct, created, next_try, sent=None, attempts=0):
    aid = "%s|%s|%d" % (account, MONTH, pct)
    db.alerts.insert_one({"_id": aid, "account": account, "kind": "user",
                          "month": MONTH, "pct": pct, "spent": Int64(2 * 10 ** 12),
                          "cap": Int64(2 * 10 ** 12), "created": created,
                          "sent": sent, "attempts": attempts, "next_try": next_try,
                          "last_error": ""})
    return aid


def test_a_dead_senders_claim_is_taken_over(make_gateway, receiver, up):
    """An alert claimed by a sender that died (its claim, next_try, has
    passed) is delivered; one whose claim still runs is left alone."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    now = datetime.datetime.now(datetime.timezone.utc)
    dead, live = new_user("deadclaim"), new_user("liveclaim")
    seed_alert(db, dead, 100, now - datetime.timedelta(minutes=2),
               now - datetime.timedelta(seconds=1), attempts=1)
    live_id = seed_alert(db, live, 100, now, now + datetime.timedelta(minutes=5))
    rx.wait(lambda b: by_threshold(b, dead) == [100])
    time.sleep(2)
    assert by_threshold(rx.delivered(), live) == []
    assert db.alerts.find_one({"_id": live_id})["sent"] is None


@pytest.mark.expect_log(r"AIP15507")
def test_given_up_after_a_day(make_gateway, receiver, up):
    """An alert the webhook has refused for 24 hours is given up, with a
    log line, and not tried again."""
    rx = receiver(fail_first=1000)
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    now = datetime.datetime.now(datetime.timezone.utc)
    email = new_user("old")
    aid = seed_alert(db, email, 100, now - datetime.timedelta(hours=25),
                     now - datetime.timedelta(seconds=1), attempts=40)
    deadline = time.time() + 10
    while time.time() < deadline and not db.alerts.find_one({"_id": aid}).get("gave_up"):
        time.sleep(0.1)
    doc = db.alerts.find_one({"_id": aid})
    assert doc.get("gave_up") and doc["sent"] is None and doc["attempts"] == 41
    time.sleep(3)
    assert len(rx.posts) == 1
    assert re.search(r"AIP15507: alert %s not delivered to 127\.0\.0\.1 after 41 "
                     r"attempts" % re.escape(aid), gw.error_log())


# ------------------------------------------------------------------ the store

@pytest.mark.expect_log(r"AIP15504", r"AIP01001", r"AIP15502")
def test_store_down_then_back_delivers_once(make_toxic_gateway, toxiproxy, store,
                                            receiver, up):
    """With the store gone the scans fail (logged) and send nothing; once
    it is back the crossing made meanwhile is delivered, once."""
    rx = receiver()
    gw = make_toxic_gateway(rx.conf()).start()
    db = store.client()[gw.db_name]
    email = new_user("storedown")
    toxiproxy.disable("store")
    try:
        seed_month(db, email, MONTH, 17 * 10 ** 11)     # 1.70 of 2.00
        time.sleep(4)
        assert rx.posts == []
    finally:
        toxiproxy.enable("store")
    rx.wait(lambda b: by_threshold(b, email) == [80], timeout=30)
    time.sleep(3)
    assert by_threshold(rx.delivered(), email) == [80]
    assert "AIP15504" in gw.error_log()


def test_another_child_takes_over_when_the_working_one_dies(make_gateway, receiver, up):
    """The child that scans is killed (-9): another child of the host sees
    its pid gone and takes the work over."""
    rx = receiver()
    gw = make_gateway(rx.conf()).start()
    db = db_of(gw)
    first, second = new_user("first"), new_user("second")
    seed_month(db, first, MONTH, 17 * 10 ** 11)
    rx.wait(lambda b: by_threshold(b, first) == [80])
    worker = int(re.findall(r"\[pid (\d+):tid \d+\] AIP15506", gw.error_log())[0])
    gw.kill_child(worker)
    seed_month(db, second, MONTH, 17 * 10 ** 11)
    rx.wait(lambda b: by_threshold(b, second) == [80], timeout=20)
    pids = re.findall(r"\[pid (\d+):tid \d+\] AIP15506: alert %s" % re.escape(second),
                      gw.error_log())
    assert pids and int(pids[0]) != worker
    assert by_threshold(rx.delivered(), first) == [80]
