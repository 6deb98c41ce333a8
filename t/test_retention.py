"""Request records (who asked what, when, at what cost) are detail kept for
AIProxyRecordRetention days, or for ever without it; `aiproxy-admin purge`
deletes older ones on any store. Month totals are the money and stay."""
import datetime
import os
import secrets
import subprocess
import time

import openai
import pytest

from conftest import ROOT, Gateway, make_token

CLI = os.path.join(ROOT, "build", "aiproxy-admin")
UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def gw(store, upstream):
    with Gateway(store, upstream) as g:
        yield g


def cli(gw, *args):
    p = subprocess.run([CLI] + list(args), env=gw.env, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def ask(gw, email, n=2):
    client = openai.OpenAI(api_key=make_token(email), base_url=gw.openai_base,
                           max_retries=0, timeout=20)
    for i in range(n):
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=10,
                                       messages=[{"role": "user", "content": "r%d" % i}])


def plant(db, email, when, tag):
    """A record as the gateway writes it, dated `when` (a fast clock)."""
    model = db.requests.find_one({"email": email})
    doc = dict(model, _id="%s-%s" % (tag, secrets.token_hex(6)), time=when)
    db.requests.insert_one(doc)
    return doc["_id"]


def ids(db, email):
    return {d["_id"] for d in db.requests.find({"email": email}, {"_id": 1})}


def test_purge_older_than_deletes_exactly_the_old_records_and_keeps_the_money(gw, up):
    email = "ret-%s@example.com" % secrets.token_hex(4)
    ask(gw, email)
    db = gw.db()
    now = datetime.datetime.now(UTC)
    recent = ids(db, email)
    assert len(recent) == 2
    old = {plant(db, email, now - datetime.timedelta(days=d), "old") for d in (31, 400)}
    kept = {plant(db, email, now - datetime.timedelta(days=d), "kept") for d in (1, 29)}
    months = list(db.months.find({}))
    assert ids(db, email) == recent | old | kept   # nothing deletes them by default

    rc, out, err = cli(gw, "purge", "--older-than", "30")
    assert rc == 0, err
    assert "deleted 2 request record(s)" in out and "month totals are kept" in out, out
    assert ids(db, email) == recent | kept
    assert list(db.months.find({})) == months     # the money, untouched
    # Again: nothing left to delete.
    rc, out, _ = cli(gw, "purge", "--older-than", "30")
    assert rc == 0 and "deleted 0 " in out


def test_purge_before_a_day_is_midnight_utc(gw, up):
    email = "ret-%s@example.com" % secrets.token_hex(4)
    ask(gw, email, n=1)
    db = gw.db()
    day = datetime.datetime(2025, 3, 1, tzinfo=UTC)
    gone = plant(db, email, day - datetime.timedelta(milliseconds=1), "gone")
    stays = plant(db, email, day, "stays")
    rc, out, err = cli(gw, "purge", "--before", "2025-03-01")
    assert rc == 0, err
    left = ids(db, email)
    assert gone not in left and stays in left and len(left) == 2


@pytest.mark.parametrize("args", [[], ["--before", "2025-02-30"], ["--before", "yesterday"],
                                  ["--older-than", "0"], ["--older-than", "-3"],
                                  ["--before", "2999-01-01"], ["--since", "3"]])
def test_purge_refuses_what_it_cannot_mean(gw, args):
    rc, out, err = cli(gw, "purge", *args)
    assert rc == 1 and out == "" and err.startswith("aiproxy-admin: "), (rc, out, err)


def test_retention_directive_deletes_old_records_by_itself(store, upstream):
    """With AIProxyRecordRetention each child deletes older records at its
    start (then hourly), whatever the store: no TTL index needed."""
    g = Gateway(store, upstream, extra_conf="AIProxyRecordRetention 30\n")
    email = "ret-%s@example.com" % secrets.token_hex(4)
    db = store.client()[g.db_name]
    now = datetime.datetime.now(UTC)
    base = {"email": email, "month": now.strftime("%Y-%m"), "endpoint": "chat/completions",
            "model": "gpt-4o-mini", "cost": 1, "status": 200, "estimated": False}
    db.requests.insert_many([dict(base, _id="old1", time=now - datetime.timedelta(days=31)),
                             dict(base, _id="old2", time=now - datetime.timedelta(days=90)),
                             dict(base, _id="new1", time=now - datetime.timedelta(days=29))])
    try:
        g.start()
        ask(g, email, n=1)
        deadline = time.time() + 10
        while time.time() < deadline and ids(db, email) & {"old1", "old2"}:
            time.sleep(0.1)
        left = ids(g.db(), email)
        assert "old1" not in left and "old2" not in left, left
        assert "new1" in left and len(left) == 2, left
    finally:
        g.stop()


def test_retention_must_be_days(make_gateway):
    rc, out = make_gateway("AIProxyRecordRetention forever\n").configtest()
    assert rc != 0 and "AIProxyRecordRetention" in out, out


def test_schema_makes_the_time_index_a_ttl_index_on_request(store):
    """On a real MongoDB the TTL index deletes old records with no gateway
    running; the same index, plain, serves the purge."""
    db_name = "t_ttl_" + secrets.token_hex(4)
    py = os.path.join(ROOT, ".venv", "bin", "python")
    apply = [py, os.path.join(ROOT, "schema", "apply.py"), store.uri, db_name]

    def ttl():
        ixs = {i["name"]: i for i in store.client()[db_name].requests.list_indexes()}
        return ixs["time_retention"].get("expireAfterSeconds")

    p = subprocess.run(apply + ["--retention-days", "90"], capture_output=True, text=True)
    assert p.returncode == 0 and "90 days" in p.stdout, p.stderr
    assert ttl() == 90 * 86400
    p = subprocess.run(apply, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert ttl() is None


def test_schema_says_in_one_line_when_the_store_is_not_there():
    py = os.path.join(ROOT, ".venv", "bin", "python")
    p = subprocess.run([py, os.path.join(ROOT, "schema", "apply.py"),
                        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", "x"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "cannot apply the schema" in p.stderr


def test_make_schema_uses_the_virtualenv(store):
    """The system python3 need not have pymongo: make schema runs with the
    virtualenv tools/setup.sh made."""
    db_name = "t_make_" + secrets.token_hex(4)
    p = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "schema",
                        "MONGODB_URI=" + store.uri, "MONGODB_DB=" + db_name,
                        "RETENTION_DAYS=7"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert p.returncode == 0, p.stdout + p.stderr
    ixs = {i["name"]: i for i in store.client()[db_name].requests.list_indexes()}
    assert ixs["time_retention"]["expireAfterSeconds"] == 7 * 86400
