"""Attacks on the gateway's memory and workers, as an abusive client (or a
provider) would make them: long streams with usage on every chunk, answers
of 30 MB, 8 MiB bodies of small numbers in parallel, slow headers and slow
bodies. Each checks that a normal client keeps being served and that the
child's peak memory grows by less than the README's stated bound.

One child serves everything here (ServerLimit 1), so its peak resident size
(VmHWM) is what the attacks cost."""
import datetime
import os
import socket
import subprocess
import threading
import time

import httpx
import openai
import pytest

from bson import Int64

from conftest import SANITIZE, make_token

MIB = 1024 * 1024
ONE_CHILD = """
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 1
    ThreadsPerChild 32
    MaxRequestWorkers 32
    MinSpareThreads 1
    MaxSpareThreads 32
</IfModule>
"""
MSG = [{"role": "user", "content": "hello"}]


def _children(gw):
    with open(os.path.join(gw.var, "httpd.pid")) as f:
        parent = f.read().strip()
    out = subprocess.run(["pgrep", "-P", parent], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Child:
    """The one child's peak resident memory, from a warmed-up start."""

    def __init__(self, gw):
        self.gw = gw
        pids = _children(gw)
        assert len(pids) == 1, pids
        self.pid = pids[0]
        self.start = _status_kib(self.pid, "VmHWM") * 1024
        self.start_rss = self.resident()

    def resident(self):
        return _status_kib(self.pid, "VmRSS") * 1024

    def growth(self):
        assert _children(self.gw) == [self.pid], "the child was replaced"
        grown = _status_kib(self.pid, "VmHWM") * 1024 - self.start
        if SANITIZE:
            # ASan keeps freed memory in quarantine and pads every block:
            # the bounds are measured on the normal build.
            return 0
        # The figure the README quotes; shown with pytest -s.
        print("attack: child peak grew %.1f MiB" % (grown / MIB))
        return grown


def _gateway(make_gateway, extra=""):
    gw = make_gateway(ONE_CHILD + extra).start()
    gw.set_cap("@example.com", 1000 * 10**12)
    # Warm up: connection pools, the first parse, the first stream.
    warm = openai.OpenAI(base_url=gw.openai_base, api_key=make_token("warm@example.com"))
    warm.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    for _ in warm.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
        pass
    return gw


def _normal_client_served(gw, within=5.0):
    """A normal request, while the attack goes on, answered in time."""
    t0 = time.monotonic()
    r = httpx.post(gw.url("/openai/v1/chat/completions"),
                   headers={"Authorization": "Bearer " + make_token("normal@example.com")},
                   json={"model": "gpt-4o-mini", "messages": MSG}, timeout=60)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert took < within, "normal request took %.1f s" % took
    return took


def _run_parallel(fns):
    errors, threads = [], []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    for fn in fns:
        t = threading.Thread(target=wrap, args=(fn,))
        t.start()
        threads.append(t)
    return threads, errors


def test_long_streams_with_usage_on_every_chunk(make_gateway, up):
    """include_usage puts "usage": null on every chunk: four streams of
    n=64 choices, 16,000 chunks each, cost the child a few MiB, not
    hundreds, and each is charged exactly what its final usage says."""
    gw = _gateway(make_gateway)
    child = Child(gw)
    up.next(want=2000, count=4)
    costs = []

    def stream(i):
        def go():
            client = openai.OpenAI(base_url=gw.openai_base,
                                   api_key=make_token("streamer%d@example.com" % i))
            chunks, usage = 0, None
            for c in client.chat.completions.create(
                    model="gpt-4o-mini", messages=MSG, stream=True, max_tokens=2000,
                    n=64, stream_options={"include_usage": True}):
                chunks += 1
                if c.usage is not None:
                    usage = c.usage
            assert usage is not None and usage.completion_tokens == 64 * 2000
            assert chunks > 16000
            costs.append(usage)
        return go
    threads, errors = _run_parallel([stream(i) for i in range(4)])
    time.sleep(0.5)
    _normal_client_served(gw)
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert len(costs) == 4
    growth = child.growth()
    assert growth < 24 * MIB, "child grew %.1f MiB" % (growth / MIB)
    # Charged from the final usage, once each.
    db = gw.db()
    for i in range(4):
        rec = db.requests.find_one({"email": "streamer%d@example.com" % i})
        assert rec["output_tokens"] == 64 * 2000 and not rec["estimated"], rec


def test_answers_of_30_mb(make_gateway, up):
    """Embeddings of 2,048 inputs at 1,536 dimensions are ~30 MB for a
    fraction of a cent: three at once pass whole, are charged their usage,
    and the child holds at most 1 MiB of each (the rest waits in a file)."""
    gw = _gateway(make_gateway)
    child = Child(gw)
    inputs = ["text number %d" % i for i in range(2048)]
    results = []

    def embed(i):
        def go():
            client = openai.OpenAI(base_url=gw.openai_base,
                                   api_key=make_token("embed%d@example.com" % i),
                                   timeout=120)
            raw = client.embeddings.with_raw_response.create(
                model="text-embedding-3-small", input=inputs, dimensions=1536,
                encoding_format="float")
            body = raw.http_response.content
            e = raw.parse()
            assert len(e.data) == 2048 and len(e.data[-1].embedding) == 1536
            assert e.usage.prompt_tokens == 2048 * 3
            results.append((len(body), raw.headers["cost"]))
        return go
    threads, errors = _run_parallel([embed(i) for i in range(3)])
    time.sleep(0.5)
    _normal_client_served(gw, within=10)
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert len(results) == 3 and all(n > 25 * 10**6 for n, _ in results), results
    growth = child.growth()
    assert growth < 24 * MIB, "child grew %.1f MiB" % (growth / MIB)
    db = gw.db()
    rec = db.requests.find_one({"email": "embed0@example.com"})
    assert rec["input_tokens"] == 2048 * 3 and not rec["estimated"], rec
    # Nothing is left in the temporary directory.
    tmp = os.environ.get("TMPDIR", "/tmp")
    assert not [f for f in os.listdir(tmp) if f.startswith("aiproxy-answer-")]


@pytest.mark.expect_log(r"AIP01205")
def test_answers_kept_in_files_are_bounded_per_child(make_gateway, up):
    """Answers past 1 MiB wait in files, at most 4 x AIProxyChildMemory of
    them per child: with 8 MiB of room, a ~31 MB answer cannot be kept. It
    is answered 502 and charged what the provider reported; a small answer
    is served meanwhile, and the room is given back after."""
    gw = _gateway(make_gateway, "AIProxyChildMemory 2097152\n")
    email = "spill@example.com"
    client = openai.OpenAI(base_url=gw.openai_base, api_key=make_token(email),
                           timeout=120, max_retries=0)
    inputs = ["text number %d" % i for i in range(2048)]
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model="text-embedding-3-small", input=inputs,
                                 dimensions=1536)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "upstream_answer_unheld", e.value.body
    rec = gw.db().requests.find_one({"email": email})
    assert rec["input_tokens"] == 2048 * 3 and not rec["estimated"], rec
    # Under the room: kept in a file and passed whole.
    small = client.embeddings.create(model="text-embedding-3-small",
                                     input=inputs[:300], dimensions=1536)
    assert len(small.data) == 300
    _normal_client_served(gw)


def _numbers_body(size):
    head = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":['
    n = (size - len(head) - 2) // 2
    return (head + "0," * (n - 1) + "0]}").encode()


def test_bodies_of_small_numbers_in_parallel(make_gateway, up):
    """An 8 MiB body of [0,0,...] would take ~400 MiB as a JSON tree: it is
    refused before the parse (413), so six at once cost the child their
    bytes, not their trees, and a normal client is served meanwhile."""
    gw = _gateway(make_gateway)
    child = Child(gw)
    body = _numbers_body(8 * MIB - 1024)

    def send(i):
        def go():
            r = httpx.post(gw.url("/openai/v1/chat/completions"), content=body,
                           headers={"Authorization": "Bearer " + make_token("nums%d@example.com" % i),
                                    "Content-Type": "application/json"}, timeout=120)
            answers.append((r.status_code, r.json()["error"]["code"]))
        return go
    for round in range(2):
        answers = []
        threads, errors = _run_parallel([send(i) for i in range(6)])
        _normal_client_served(gw)
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert answers == [(413, "request_too_complex")] * 6, answers
        growth = child.growth()
        # Six bodies of 8 MiB read at once, and little else.
        assert growth < 6 * 8 * MIB + 24 * MIB, \
            "round %d: child grew %.1f MiB" % (round, growth / MIB)
    # What they took went back to the system: the child is not left the
    # size of its busiest moment.
    if not SANITIZE:
        held = child.resident() - child.start_rss
        assert held < 16 * MIB, "child still holds %.1f MiB" % (held / MIB)
    # Nothing was reserved or charged for them.
    assert gw.db().requests.count_documents({"email": {"$regex": "^nums"}}) == 0


@pytest.mark.expect_log(r"AIP01202")
def test_a_long_text_body_is_not_too_complex(make_gateway, up):
    """The bound refuses trees, not text: a 6 MiB prompt is parsed."""
    gw = _gateway(make_gateway)
    text = "word " * (6 * MIB // 5)
    r = httpx.post(gw.url("/openai/v1/chat/completions"),
                   headers={"Authorization": "Bearer " + make_token("long@example.com")},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                   timeout=60)
    assert r.status_code == 200, r.text


@pytest.mark.expect_log(r"AIP01202")
def test_a_full_child_refuses_large_bodies_and_serves_small_ones(make_gateway, up):
    """AIProxyChildMemory: past it, large requests wait their turn (503 with
    Retry-After, which the SDKs retry); small ones always fit."""
    gw = _gateway(make_gateway, "AIProxyChildMemory 20971520\n")
    up.next(delay_ms=3000, count=8)
    text = "word " * (3 * MIB // 5)
    answers = []

    def big(i):
        def go():
            r = httpx.post(gw.url("/openai/v1/chat/completions"),
                           headers={"Authorization": "Bearer " + make_token("big%d@example.com" % i)},
                           json={"model": "gpt-4o-mini",
                                 "messages": [{"role": "user", "content": text}]},
                           timeout=60)
            answers.append((r.status_code, r.headers.get("Retry-After"),
                            r.json().get("error", {}).get("code")))
        return go
    threads, errors = _run_parallel([big(i) for i in range(8)])
    time.sleep(1.0)
    up.reset()
    _normal_client_served(gw)
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    busy = [a for a in answers if a[0] == 503]
    assert busy and all(a == (503, "1", "server_busy") for a in busy), answers
    assert any(a[0] == 200 for a in answers), answers
    stats = httpx.get(gw.url("/api/stats"),
                      headers={"Authorization": "Bearer " + make_token("admin@example.com")}).json()
    assert stats["busy"] == len(busy)
    # A busy refusal charged nothing.
    db = gw.db()
    for i in range(8):
        recs = list(db.requests.find({"email": "big%d@example.com" % i}))
        assert len(recs) <= 1


def test_spent_month_is_refused_before_the_body_is_read(make_gateway, up):
    """A user this child saw over the cap is refused at once: the body of
    the next request is not read (the client's send of it is cut short)."""
    gw = _gateway(make_gateway, "AIProxyUserCacheTTL 30\n")
    email = "spent@example.com"
    gw.set_cap(email, 10**6)
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    gw.db().months.insert_one({
        "_id": "%s|%s" % (email, month), "email": email, "month": month,
        "spent": Int64(10**6), "reserved": Int64(0), "load": Int64(10**6),
        "requests": Int64(3), "holds": {}})
    hdr = {"Authorization": "Bearer " + make_token(email)}
    # The store says so once; this child remembers.
    r = httpx.post(gw.url("/openai/v1/chat/completions"), headers=hdr,
                   json={"model": "gpt-4o-mini", "messages": MSG})
    assert r.status_code == 429 and "exceeding" in r.json()["error"]["message"]
    # Now a body that never finishes is answered without waiting for it.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: " + hdr["Authorization"].encode() + b"\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
    t0 = time.monotonic()
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 429"), data[:200]
    assert b"nothing is left this month" in data
    assert time.monotonic() - t0 < 3


@pytest.mark.expect_log(r"AH00484", r"AH10159")
def test_slowloris_mix_does_not_stop_normal_clients(make_gateway, up):
    """Slow headers and slow bodies (shipped RequestReadTimeout): the
    trickling connections are dropped within the stated times, and a normal
    client is served while they trickle."""
    gw = make_gateway().start()
    tok = make_token("slow@example.com").encode()
    header_conns, body_conns = [], []
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=40)
        s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        header_conns.append(s)
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=40)
        s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + tok + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"model\":")
        body_conns.append(s)
    t0 = time.monotonic()
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in header_conns + body_conns:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass
            stop.wait(1.0)
    t = threading.Thread(target=trickle)
    t.start()
    try:
        # The headers' 10 s (no trickle reaches 500 bytes/s) frees workers.
        _normal_client_served(gw, within=15)
        dropped_at = {}
        deadline = t0 + 40
        conns = header_conns + body_conns
        while len(dropped_at) < len(conns) and time.monotonic() < deadline:
            for i, s in enumerate(conns):
                if i in dropped_at:
                    continue
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        dropped_at[i] = time.monotonic() - t0
                except BlockingIOError:
                    pass
                except OSError:
                    dropped_at[i] = time.monotonic() - t0
            time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert len(dropped_at) == len(conns), "%d of %d still open" % (
        len(conns) - len(dropped_at), len(conns))
    # Each is dropped 10 s (headers) or 20 s (body) after a worker takes
    # it; with more of them than workers, the last wait for the first.
    assert max(dropped_at.values()) < 35
    for s in conns:
        s.close()
    _normal_client_served(gw)
