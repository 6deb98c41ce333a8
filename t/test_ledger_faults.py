"""Settlement is exactly once even when the store's reply is lost.

The gateway reaches the store through t/store_relay.py, which forwards a
settling update, lets the store apply it, and then cuts the connection
instead of passing the reply on. The gateway retries on the broken stream;
the retry must find the request already settled and charge nothing more."""
import json
import time
import secrets
from decimal import Decimal

import httpx
import openai
import pytest

from conftest import Gateway, make_token
from helpers import new_email

# The subject: replies from the store lost on the way (mongoc's AIP01001).
pytestmark = pytest.mark.expect_log(r"AIP01001", r"AIP01101", r"AIP01106")
from store_relay import StoreRelay


class RelayedStore:
    """The session's store, reached by the gateway through the relay; the
    tests read it directly."""

    def __init__(self, store, relay):
        self.store = store
        self.uri = relay.uri

    def client(self):
        return self.store.client()


@pytest.fixture(scope="module")
def relay(store):
    host, port = store.uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    r = StoreRelay(host, int(port))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def rgw(store, upstream, relay):
    with Gateway(RelayedStore(store, relay), upstream) as g:
        yield g


@pytest.fixture
def armed(relay):
    relay.disarm()
    yield relay
    relay.disarm()


def pico(header):
    return int(Decimal(header) * 10**12)


def test_lost_settle_reply_charges_once(rgw, up, armed):
    email = new_email("lostreply")
    client = openai.OpenAI(base_url=rgw.openai_base, api_key=make_token(email),
                           max_retries=0)
    dropped = armed.dropped
    # The settlement's findAndModify: it removes the hold.
    armed.drop_reply(b"findAndModify", b"holds.", b"$unset")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=50,
        messages=[{"role": "user", "content": "settle me once"}])
    assert raw.parse().choices[0].message.content
    assert armed.dropped == dropped + 1, "the relay lost no settle reply"
    cost = pico(raw.headers["cost"])
    assert cost > 0
    db = rgw.db()
    m = db.months.find_one({"email": email})
    assert m["spent"] == cost
    assert m["load"] == cost
    assert m["requests"] == 1
    assert m["reserved"] == 0
    assert m["holds"] == {}
    recs = list(db.requests.find({"email": email}))
    assert len(recs) == 1 and recs[0]["cost"] == cost
    assert int(raw.headers["monthlyRequests"]) == 1
    assert pico(raw.headers["monthlyCost"]) == cost


def test_lost_reply_of_a_cache_hit_charges_once(rgw, up, armed):
    """A cache hit has no hold: its settlement is the no-hold update."""
    email = new_email("losthit")
    body = json.dumps({"model": "text-embedding-3-small",
                       "input": "cache me %s" % secrets.token_hex(4)}).encode()
    h = {"Authorization": "Bearer " + make_token(email),
         "Content-Type": "application/json"}
    miss = httpx.post(rgw.url("/openai/v1/embeddings"), content=body, headers=h,
                      timeout=30)
    assert miss.status_code == 200 and miss.headers["x-cache"] == "MISS"
    dropped = armed.dropped
    armed.drop_reply(b"findAndModify", b"spent")
    hit = httpx.post(rgw.url("/openai/v1/embeddings"), content=body, headers=h,
                     timeout=30)
    assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
    assert armed.dropped == dropped + 1, "the relay lost no settle reply"
    db = rgw.db()
    m = db.months.find_one({"email": email})
    assert m["spent"] == pico(miss.headers["cost"])
    assert m["requests"] == 2
    assert m["reserved"] == 0 and m["holds"] == {}
    assert db.requests.count_documents({"email": email}) == 2
    assert hit.headers["monthlyRequests"] == "2"


def test_health_probes_the_store_once_per_period(rgw, relay):
    """/health is public: polling it hard costs the store one ping per
    period (2 s), from any number of calls and children."""
    relay.watch(b"ping")
    t0 = time.monotonic()
    n = 0
    with httpx.Client(timeout=10) as c:
        while time.monotonic() - t0 < 3:
            r = c.get(rgw.url("/health"))
            assert r.status_code == 200 and r.json()["status"] == "ok"
            n += 1
    pings = relay.count(b"ping")
    assert n > 50 and 1 <= pings <= 3, (n, pings)
