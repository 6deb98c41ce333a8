"""Request records are written by each child's writer thread, just after
the response, in batches: every settled request still gets exactly one
record, including those still queued when httpd stops."""
import concurrent.futures
import secrets
import time
from decimal import Decimal

import openai
import pytest

from conftest import Gateway, make_token
from helpers import stats

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

N = 64


def burst(gw, email, n=N):
    client = openai.OpenAI(api_key=make_token(email), base_url=gw.url("/openai/v1"),
                           max_retries=0)

    def one(i):
        r = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=20,
            messages=[{"role": "user", "content": "record %d" % i}])
        return r.headers["cost"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


def test_every_settled_request_has_one_record(gateway, up):
    email = "rec-%s@example.com" % secrets.token_hex(4)
    costs = burst(gateway, email)
    db = gateway.db()          # waits for records_pending == 0
    assert stats(gateway)["records_pending"] == 0
    docs = list(db.requests.find({"email": email}))
    assert len(docs) == N and len({d["_id"] for d in docs}) == N
    month = db.months.find_one({"email": email})
    assert month["requests"] == N
    assert sum(d["cost"] for d in docs) == month["spent"]
    # What the client was told, request by request, is what was recorded.
    assert sorted(int(Decimal(c) * 10 ** 12) for c in costs) == \
        sorted(d["cost"] for d in docs)


def test_records_queued_at_stop_are_written(store, upstream):
    g = Gateway(store, upstream).start()
    email = "stop-%s@example.com" % secrets.token_hex(4)
    try:
        burst(g, email)
    finally:
        # Straight after the last response: whatever is still queued is
        # written while the children exit.
        g.proc.terminate()
        g.proc.wait(timeout=30)
    db = store.client()[g.db_name]
    month = db.months.find_one({"email": email})
    assert month["requests"] == N
    docs = list(db.requests.find({"email": email}))
    assert len(docs) == N
    assert sum(d["cost"] for d in docs) == month["spent"]
    assert "lost" not in g.error_log()


def test_records_pending_is_in_stats(gateway):
    s = stats(gateway)
    assert isinstance(s["records_pending"], int)
    deadline = time.time() + 10
    while s["records_pending"] and time.time() < deadline:
        time.sleep(0.05)
        s = stats(gateway)
    assert s["records_pending"] == 0
