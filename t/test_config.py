"""Configuration: a broken configuration stops httpd at start-up with a
message naming the directive; an unreachable store does not stop it but
every request fails closed, fast, in JSON."""
import json
import os
import secrets
import subprocess
import tempfile
import time

import pytest

from conftest import TEST_CONF, free_port, make_token

UNSET_VAR = "AIPROXY_T_UNSET_" + secrets.token_hex(4).upper()


@pytest.fixture
def tmpfile():
    made = []

    def make(content):
        fd, path = tempfile.mkstemp(prefix="aiproxy-t-")
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(path, 0o644)
        made.append(path)
        return path

    yield make
    for p in made:
        os.unlink(p)


def configtest_fails(gw, *needles):
    rc, out = gw.configtest()
    assert rc != 0, out
    assert "Syntax OK" not in out
    for n in needles:
        assert n in out, out
    return out


def start_fails(gw, *needles):
    with pytest.raises(RuntimeError) as e:
        gw.start()
    assert gw.proc.poll() is not None and gw.proc.returncode != 0
    text = str(e.value)
    for n in needles:
        assert n in text, text
    return text


def test_default_config_is_ok(make_gateway):
    rc, out = make_gateway().configtest()
    assert rc == 0, out
    assert "Syntax OK" in out


# ---------------------------------------------------------------- the token secret

def test_token_secret_env_unset(make_gateway):
    gw = make_gateway()
    del gw.env["AIPROXY_TOKEN_SECRET"]
    configtest_fails(gw, "AIProxyTokenSecret", "AIPROXY_TOKEN_SECRET")
    start_fails(gw, "AIProxyTokenSecret", "AIPROXY_TOKEN_SECRET")


def test_token_secret_env_empty(make_gateway):
    gw = make_gateway(env={"AIPROXY_TOKEN_SECRET": ""})
    configtest_fails(gw, "AIProxyTokenSecret", "AIPROXY_TOKEN_SECRET")


def test_token_secret_file_empty(make_gateway, tmpfile):
    path = tmpfile("")
    gw = make_gateway("AIProxyTokenSecret file:%s\n" % path)
    configtest_fails(gw, "AIProxyTokenSecret", path)
    start_fails(gw, "AIProxyTokenSecret", path)


def test_token_secret_file_only_newline(make_gateway, tmpfile):
    path = tmpfile("\n")
    configtest_fails(make_gateway("AIProxyTokenSecret file:%s\n" % path),
                     "AIProxyTokenSecret", "empty")


def test_token_secret_file_with_nul(make_gateway, tmpfile):
    """Read up to its NUL, this secret would be 'abc': guessable."""
    path = tmpfile("abc\0" + secrets.token_hex(32))
    configtest_fails(make_gateway("AIProxyTokenSecret file:%s\n" % path),
                     "AIProxyTokenSecret", "NUL")


def test_token_secret_file_missing(make_gateway):
    path = "/nonexistent/aiproxy-secret-" + secrets.token_hex(4)
    configtest_fails(make_gateway("AIProxyTokenSecret file:%s\n" % path),
                     "AIProxyTokenSecret", path)


def test_token_secret_file_works(make_gateway, tmpfile, up):
    """The file form with a trailing newline: the newline is not part of it."""
    secret = "file-secret-" + secrets.token_hex(16)
    gw = make_gateway("AIProxyTokenSecret file:%s\n" % tmpfile(secret + "\n")).start()
    ok = make_token("cfg@example.com", secret=secret)
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        "Authorization: Bearer " + ok, gw.url("/openai/v1/models")],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout == "200"
    bad = make_token("cfg@example.com")  # the session's secret, not this one
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        "Authorization: Bearer " + bad, gw.url("/openai/v1/models")],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout == "401"


@pytest.mark.parametrize("value", ["inline-secret-value-1234", "env:", "file:",
                                   "ENV:AIPROXY_TOKEN_SECRET"])
def test_token_secret_inline_refused(make_gateway, value):
    out = configtest_fails(make_gateway("AIProxyTokenSecret %s\n" % value),
                           "AIProxyTokenSecret")
    if value.startswith("inline"):
        assert value not in out  # never echo what may be a secret


def test_token_secret_missing_directive(make_gateway, tmpfile):
    """No AIProxyTokenSecret at all while routes exist: the tests' own
    configuration with the directive removed."""
    with open(TEST_CONF) as f:
        text = "".join(l for l in f if not l.strip().startswith("AIProxyTokenSecret"))
    gw = make_gateway()
    gw.write_conf("", site_conf=tmpfile(text))
    p = subprocess.run(gw.args() + ["-t"], env=gw.env, capture_output=True, text=True)
    assert p.returncode != 0
    assert "AIProxyTokenSecret" in p.stdout + p.stderr


# ---------------------------------------------------------------- providers and routes

def test_provider_without_key(make_gateway):
    configtest_fails(make_gateway("AIProxyProvider other http://127.0.0.1:9/v1 api=openai\n"),
                     "AIProxyProvider", "other", "key")


def test_provider_key_env_unset(make_gateway):
    gw = make_gateway("AIProxyProvider other http://127.0.0.1:9/v1 key=env:%s\n" % UNSET_VAR)
    configtest_fails(gw, "AIProxyProvider", "other", UNSET_VAR)
    start_fails(gw, "AIProxyProvider", UNSET_VAR)


def test_openai_key_env_empty(make_gateway):
    configtest_fails(make_gateway(env={"OPENAI_API_KEY": ""}),
                     "AIProxyProvider", "openai", "OPENAI_API_KEY")


def test_provider_key_file_missing(make_gateway):
    configtest_fails(make_gateway("AIProxyProvider other http://127.0.0.1:9/v1 "
                                  "key=file:/nonexistent/key\n"),
                     "AIProxyProvider", "/nonexistent/key")


def test_provider_inline_key_refused(make_gateway):
    out = configtest_fails(make_gateway("AIProxyProvider other http://127.0.0.1:9/v1 "
                                        "key=sk-inline-9f8e7d\n"),
                           "AIProxyProvider", "other")
    assert "sk-inline-9f8e7d" not in out


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "127.0.0.1:9/v1",
                                 "http://user:pw@127.0.0.1/v1", "http://127.0.0.1/v1?x=1"])
def test_provider_bad_url(make_gateway, url):
    configtest_fails(make_gateway("AIProxyProvider other %s key=env:OPENAI_API_KEY\n" % url),
                     "AIProxyProvider", "base URL")


def test_provider_defined_twice(make_gateway):
    configtest_fails(make_gateway("AIProxyProvider openai http://127.0.0.1:9/v1 "
                                  "key=env:OPENAI_API_KEY\n"),
                     "AIProxyProvider", "twice")


def test_route_unknown_provider(make_gateway):
    gw = make_gateway("<Location /other/v1>\n    AIProxyRoute nosuch\n</Location>\n")
    configtest_fails(gw, "AIProxyRoute", "nosuch")
    start_fails(gw, "AIProxyRoute", "nosuch")


def test_route_outside_location(make_gateway):
    configtest_fails(make_gateway("AIProxyRoute openai\n"), "AIProxyRoute")


def test_route_without_models(make_gateway):
    """A route allows nothing by default: it must say which models."""
    gw = make_gateway("<Location /other/v1>\n    AIProxyRoute openai\n</Location>\n")
    configtest_fails(gw, "AIProxyRoute", "AIProxyModels", "/other/v1")
    start_fails(gw, "AIProxyRoute", "AIProxyModels")


def test_path_route_must_name_its_providers(make_gateway):
    configtest_fails(make_gateway("<Location /p>\n    AIProxyRoute path\n"
                                  "    AIProxyModels *\n</Location>\n"),
                     "AIProxyRoute path", "providers")
    configtest_fails(make_gateway("<Location /p>\n    AIProxyRoute path openai nosuch\n"
                                  "    AIProxyModels *\n</Location>\n"),
                     "AIProxyRoute path", "nosuch")


def test_endpoint_the_gateway_cannot_meter(make_gateway):
    configtest_fails(make_gateway("<Location /p>\n    AIProxyRoute openai\n"
                                  "    AIProxyModels *\n"
                                  "    AIProxyEndpoints chat/completions audio/translations\n"
                                  "</Location>\n"),
                     "AIProxyEndpoints", "audio/translations")


def test_endpoint_of_another_api_on_a_fixed_route(make_gateway):
    configtest_fails(make_gateway("<Location /p>\n    AIProxyRoute openai\n"
                                  "    AIProxyModels *\n"
                                  "    AIProxyEndpoints chat/completions messages\n"
                                  "</Location>\n"),
                     "AIProxyEndpoints messages", "/p", "openai")


def test_models_without_price(make_gateway):
    gw = make_gateway("<Location /other/v1>\n    AIProxyRoute openai\n"
                      "    AIProxyModels gpt-4o-mini gpt-unpriced-9\n</Location>\n")
    configtest_fails(gw, "AIProxyModels", "gpt-unpriced-9", "$0")
    start_fails(gw, "AIProxyModels", "gpt-unpriced-9", "$0")


# ---------------------------------------------------------------- prices

@pytest.mark.parametrize("line,needle", [
    ("AIProxyPrice m1 input=abc", "abc"),
    ("AIProxyPrice m1 input=0.1234567", "decimals"),
    ("AIProxyPrice m1 input=0.15 output=1.0000001", "decimals"),
    ("AIProxyPrice m1 input=-1", "-1"),
    ("AIProxyPrice m1 input=1e3", "1e3"),
    ("AIProxyPrice m1 input=", "not a number"),
    ("AIProxyPrice m1 output=1", "input= is required"),
    ("AIProxyPrice m1 input=1 bogus=2", "bogus"),
    ("AIProxyPrice m1 input=1 output", "output"),
    ("AIProxyPrice", "usage"),
    # Output priced without the most one answer can have: nothing bounds it.
    ("AIProxyPrice m1 input=1 output=2", "max_output="),
    ("AIProxyPrice m1 input=1 output=2 max_output=1.5", "max_output="),
    ("AIProxyPrice m1 input=1 output=2 max_output=-3", "max_output="),
    ("AIProxyPrice m1 input=1 output=2 max_output=9 image=x", "image="),
    # A model that answers in tokens, priced without them: $0 output.
    ("AIProxyPrice gpt-4o-mini input=0.15", "output= is required"),
    ("AIProxyPrice claude-x input=1 cached=0.1 context=1000", "output= is required"),
])
def test_bad_price(make_gateway, line, needle):
    configtest_fails(make_gateway(line + "\n"), "AIProxyPrice", needle)


def test_good_price_with_six_decimals(make_gateway):
    rc, out = make_gateway("AIProxyPrice m1 input=0.123456 cached=0 output=12 "
                           "max_output=100 context=1000 image=85\n").configtest()
    assert rc == 0, out


def test_output_free_prices(make_gateway):
    """Embedding models (named *embed*) may leave output= out; any other
    model that costs nothing for output says so with output=0."""
    rc, out = make_gateway("AIProxyPrice my-embed-v2 input=0.02\n"
                           "AIProxyPrice Text-Embedding-9 input=0.02\n"
                           "AIProxyPrice free-chat input=0.1 output=0\n").configtest()
    assert rc == 0, out


# ---------------------------------------------------------------- other directives

@pytest.mark.parametrize("line", ["AIProxyMonthlyCap two", "AIProxyMonthlyCap -1",
                                  "AIProxyStoreTimeout 0", "AIProxyStoreTimeout abc",
                                  "AIProxyTokenLeeway -5", "AIProxyMaxBody 10",
                                  "AIProxyAdmins not-an-email",
                                  "AIProxyStoreDatabase bad.name",
                                  "AIProxyLeaseSize -0.5", "AIProxyLeaseSize lots",
                                  "AIProxyLeaseFlush 5", "AIProxyLeaseIdle 0",
                                  "AIProxyLeaseTTL 1", "AIProxyLeaseSlots 2",
                                  "AIProxyHostId a.b", "AIProxyHostId " + "h" * 65,
                                  "AIProxyAlertWebhook ftp://hooks.example/x",
                                  "AIProxyAlertWebhook not-a-url",
                                  "AIProxyAlertThresholds 0", "AIProxyAlertThresholds 80 1001",
                                  "AIProxyAlertThresholds eighty", "AIProxyAlertThresholds 80 80",
                                  "AIProxyAlertInterval 0", "AIProxyAlertInterval 3601",
                                  "AIProxyAlertInterval soon"])
def test_bad_values_name_directive(make_gateway, line):
    configtest_fails(make_gateway(line + "\n"), line.split()[0])


def test_bad_alert_webhook_secret_not_echoed(make_gateway):
    """A webhook URL may carry a secret (Slack's do): a bad one is refused
    without echoing it."""
    out = configtest_fails(make_gateway("AIProxyAlertWebhook ftp://h.example/T0/hk-s3cr3t-91\n"),
                           "AIProxyAlertWebhook")
    assert "hk-s3cr3t-91" not in out


def test_alert_directives_accepted(make_gateway):
    rc, out = make_gateway("AIProxyAlertWebhook https://hooks.example/T0/x\n"
                           "AIProxyAlertThresholds 50 90 100 150\n"
                           "AIProxyAlertInterval 60\n").configtest()
    assert rc == 0, out


# ---------------------------------------------------------------- the store

@pytest.mark.parametrize("uri", ["http://127.0.0.1:27017", "not a uri", "mongodb://",
                                 "mongodb://127.0.0.1:notaport"])
def test_bad_store_uri(make_gateway, uri):
    configtest_fails(make_gateway('AIProxyStore "%s"\n' % uri), "AIProxyStore")


def test_bad_store_uri_password_not_echoed(make_gateway):
    out = configtest_fails(make_gateway('AIProxyStore "mongodb://user:pw-s3cr3t-77@/"\n'),
                           "AIProxyStore")
    assert "pw-s3cr3t-77" not in out


def test_bad_store_uri_from_env(make_gateway):
    configtest_fails(make_gateway(env={"AIPROXY_STORE": "postgres://127.0.0.1/x"}),
                     "AIProxyStore")


@pytest.mark.expect_log(r"AIP01101", r"AIP01106", r"AIP01001")
def test_store_down_fails_closed(make_gateway, up):
    dead = "mongodb://store-user:store-pw-5ecret@127.0.0.1:%d/?directConnection=true" % free_port()
    gw = make_gateway(env={"AIPROXY_STORE": dead}).start()
    tok = make_token("closed@example.com")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    for path, data in (("/openai/v1/chat/completions", body), ("/openai/v1/models", None)):
        cmd = ["curl", "-s", "-w", "\n%{http_code}", "--max-time", "10",
               "-H", "Authorization: Bearer " + tok]
        if data:
            cmd += ["-H", "Content-Type: application/json", "-d", data]
        t0 = time.time()
        p = subprocess.run(cmd + [gw.url(path)], capture_output=True, text=True, timeout=20)
        elapsed = time.time() - t0
        text, status = p.stdout.rsplit("\n", 1)
        assert status == "503", p.stdout
        assert elapsed < 2.5, elapsed
        err = json.loads(text)["error"]
        assert err["message"] and err["type"] and err["code"]
    # A bad token is still refused first, without the store.
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", "Authorization: Bearer nope", gw.url("/openai/v1/models")],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout == "401"
    assert up.requests() == []
    time.sleep(0.2)
    assert "store-pw-5ecret" not in gw.error_log() + gw.access_log()


@pytest.mark.expect_log(r"AIP01101", r"AIP01106", r"AIP01001")
def test_store_down_sdk(make_gateway, up):
    import openai

    gw = make_gateway(env={"AIPROXY_STORE": "mongodb://127.0.0.1:%d" % free_port()}).start()
    client = openai.OpenAI(base_url=gw.openai_base, api_key=make_token("closed@example.com"),
                           max_retries=0, timeout=10)
    t0 = time.time()
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
    assert time.time() - t0 < 2.5
    assert e.value.status_code == 503
    assert up.requests() == []
