"""When the usage store goes away the gateway refuses quickly (503 JSON, no
provider call) and recovers by itself when the store is back; when the
provider times out the request is counted at $0 and its hold released."""
import json
import time

import httpx
import pytest

from conftest import Gateway, Store, make_token, usd
from helpers import new_email

# The subject: a store gone (AIP01101, mongoc's AIP01001) and providers
# that time out (mod_proxy's AH01102, AH00898; AIP01310).
pytestmark = pytest.mark.expect_log(r"AIP01101", r"AIP01106", r"AIP01001", r"AIP01310", r"AH01102", r"AH00898")

CHAT = "/openai/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "hello there"}]}).encode()
STORE_DOWN_ANSWER_WITHIN = 2.5     # AIProxyStoreTimeout is 1500 ms in t/conf/


def post(gw, email, headers=None, timeout=30):
    h = {"Authorization": "Bearer " + make_token(email)}
    h.update(headers or {})
    return httpx.post(gw.url(CHAT), content=BODY, headers=h, timeout=timeout)


@pytest.fixture
def own_store():
    """A store of this test's own, so it can be stopped and restarted."""
    s = Store()
    if not s.local:
        pytest.skip("needs the local store to stop it (MONGODB_URI is set)")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_gateway(own_store, up):
    with Gateway(own_store, up) as gw:
        yield gw


def test_store_down_is_503_fast_and_recovers_by_itself(own_store, own_gateway, up):
    gw = own_gateway
    email = new_email("store-down")
    assert post(gw, email).status_code == 200

    own_store.stop()
    up.reset()
    for _ in range(3):
        t0 = time.monotonic()
        r = post(gw, email)
        took = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"]["code"] == "store_unavailable"
        assert took < STORE_DOWN_ANSWER_WITHIN, "503 took %.2f s" % took
        print("store down: 503 in %.2f s" % took)
    # /usage/me needs the store too.
    r = httpx.get(gw.url("/usage/me"), timeout=30,
                  headers={"Authorization": "Bearer " + make_token(email)})
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert up.requests() == [], "a request reached the provider without a reservation"

    # Back on the same port (its memory is gone): no restart of httpd needed.
    own_store.restart()
    t0 = time.monotonic()
    deadline = t0 + 10
    statuses = []
    while True:
        r = post(gw, email)
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, "still failing after 10 s: %s" % statuses
        time.sleep(0.2)
    recovered = time.monotonic() - t0
    print("store back: recovered in %.2f s (%d tries)" % (recovered, len(statuses)))
    assert recovered < 5, "recovered only after %.1f s" % recovered
    assert r.headers["monthlyRequests"] == "1"      # the store started empty
    m = gw.db().months.find_one({"email": email})
    assert m["requests"] == 1 and m["reserved"] == 0 and m["holds"] == {}
    assert len(up.requests()) == 1


@pytest.mark.parametrize("control", [{"X-Fake-Delay-Ms": "5000"}, {"X-Fake-Hang": "1"}],
                         ids=["slow", "hang"])
def test_upstream_timeout_is_charged_its_reservation(make_gateway, up, control):
    # The request was sent: the provider may have done (and billed) the
    # work, so the student pays the reservation, marked estimated, and no
    # other attempt is made.
    # ProxyTimeout alone does not apply: t/conf/aiproxy.conf gives the
    # provider's worker its own timeout=300, which wins over ProxyTimeout.
    # A second ProxySet on the same worker URL shortens it.
    gw = make_gateway("ProxyTimeout 2\n"
                      "<Proxy \"${OPENAI_BASE_URL}\">\n"
                      "    ProxySet timeout=2\n"
                      "</Proxy>\n").start()
    email = new_email("timeout")
    t0 = time.monotonic()
    r = post(gw, email, headers=control)
    took = time.monotonic() - t0
    assert r.status_code == 504, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert took < 4.5, "the 2 s proxy timeout took %.1f s" % took
    assert r.headers["monthlyRequests"] == "1"
    assert len(up.requests()) == 1
    # Settled before the answer left, but poll a little to be safe.
    db = gw.db()
    deadline = time.time() + 5
    while time.time() < deadline and not db.requests.find_one({"email": email}):
        time.sleep(0.05)
    doc = db.requests.find_one({"email": email})
    assert doc and doc["status"] == r.status_code and doc["estimated"] is True
    assert doc["cost"] == doc["reserved"] > 0
    assert r.headers["cost"] == usd(doc["cost"])
    m = db.months.find_one({"email": email})
    assert m["spent"] == doc["cost"] and m["requests"] == 1
    assert m["reserved"] == 0 and m["load"] == m["spent"] and m["holds"] == {}


@pytest.mark.parametrize("status", [401, 500, 503])
def test_uncharged_failures_do_not_count_as_requests(gateway, up, status):
    """monthlyRequests counts what was charged (or answered): a request the
    provider failed, at $0, is recorded but not counted."""
    email = new_email("uncounted")
    r = post(gateway, email)
    assert r.status_code == 200 and r.headers["monthlyRequests"] == "1"
    up.next(status=status)
    r = post(gateway, email)
    assert r.status_code >= 400, r.text
    if "monthlyRequests" in r.headers:
        assert r.headers["monthlyRequests"] == "1" and r.headers["cost"] == "0"
    r = post(gateway, email)
    assert r.status_code == 200 and r.headers["monthlyRequests"] == "2", r.headers
    db = gateway.db()
    m = db.months.find_one({"email": email})
    assert m["requests"] == 2, m
    # The failure is still on record (status, $0), only not counted.
    recs = list(db.requests.find({"email": email}))
    assert len(recs) == 3 and sum(d["cost"] for d in recs) == m["spent"]
    assert sorted(d["status"] for d in recs)[-1] >= 400
