"""Token secrets that cannot be guessed and that rotate: a secret under 32
bytes stops httpd naming the directive; several secrets at once, each with
a key id (`AIProxyTokenSecret KID file:...`); the last one signs new tokens
and names itself in their `kid`, the others still verify, so a rotation
never logs out a class; removing a secret retires its tokens; an unknown kid
is refused. `aiproxy-admin secret new/list`; AIProxyTokenLifetime's default
(120 days) on every issuing path."""
import os
import re
import secrets
import stat
import subprocess
import time

import httpx
import jwt
import openai
import pytest

from conftest import ROOT, TOKEN_SECRET, make_token
from google_fake import GoogleFake

CLI = os.path.join(ROOT, "build", "aiproxy-admin")
TERM = 120 * 86400


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-f", "Makefile.apxs", "cli"], cwd=ROOT, check=True)


def cli(gw, *args):
    p = subprocess.run([CLI, "-f", gw.conf] + list(args), env=gw.env, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def new_secret(gw, path):
    """A secret file made by the CLI, as an operator would."""
    rc, out, err = cli(gw, "secret", "new", str(path))
    assert rc == 0, err
    return path.read_text().strip()


def cli_token(gw, email, *args):
    rc, out, err = cli(gw, "token", email, *args)
    assert rc == 0, err
    return out.strip()


def kid(token):
    return jwt.get_unverified_header(token).get("kid")


def chat(gw, token):
    client = openai.OpenAI(base_url=gw.openai_base, api_key=token, max_retries=0)
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "rotate me"}])
    return r.choices[0].message.content


def refused(gw, token):
    """The 401 a client sees, in OpenAI's error shape."""
    with pytest.raises(openai.AuthenticationError) as e:
        chat(gw, token)
    assert e.value.status_code == 401
    err = e.value.response.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    assert err["code"] == "invalid_api_key"
    return err["message"]


def restart(gw, conf):
    gw.stop()
    gw.extra_conf = conf
    return gw.start()


# ---------------------------------------------------------------- guessable secrets

@pytest.mark.parametrize("length", [3, 31])
def test_short_secret_stops_httpd(make_gateway, length):
    value = ("zq" + secrets.token_hex(16))[:length]   # "zq": in no message
    gw = make_gateway(env={"AIPROXY_TOKEN_SECRET": value})
    rc, out = gw.configtest()
    assert rc != 0 and "Syntax OK" not in out
    assert "AIProxyTokenSecret" in out and "at least 32" in out, out
    assert "openssl rand -hex 32" in out and "aiproxy-admin secret new" in out
    assert "%d bytes" % len(value) in out
    assert value not in out             # never the secret itself
    with pytest.raises(RuntimeError) as e:
        gw.start()
    assert "AIProxyTokenSecret" in str(e.value) and "at least 32" in str(e.value)
    assert value not in str(e.value)


def test_short_secret_with_key_id_named(make_gateway, tmp_path):
    short = tmp_path / "short"
    short.write_text("x" * 31 + "\n")
    out = make_gateway("AIProxyTokenSecret term2 file:%s\n" % short).configtest()[1]
    assert "AIProxyTokenSecret term2" in out and "31 bytes" in out, out


def test_32_bytes_is_enough(make_gateway, tmp_path, up):
    """The count is of the bytes as written, without the trailing newline."""
    s = tmp_path / "s"
    s.write_text("y" * 32 + "\n")
    gw = make_gateway("AIProxyTokenSecret edge file:%s\n" % s).start()
    tok = jwt.encode({"email": "edge@example.com", "iat": int(time.time())}, "y" * 32,
                     algorithm="HS256", headers={"kid": "edge"})
    assert chat(gw, tok) == "This is a fake reply."


@pytest.mark.parametrize("line,fragment", [
    ("AIProxyTokenSecret bad/kid env:AIPROXY_TOKEN_SECRET", "key id"),
    ("AIProxyTokenSecret k1 abcdefabcdefabcdefabcdefabcdefabcdef", "never the secret"),
    ("AIProxyTokenSecret k1 env:AIPROXY_TOKEN_SECRET extra", "AIProxyTokenSecret"),
])
def test_bad_secret_lines(make_gateway, line, fragment):
    rc, out = make_gateway(line + "\n").configtest()
    assert rc != 0 and fragment in out, out
    assert "abcdefabcdefabcdef" not in out


# ---------------------------------------------------------------- rotation

def test_rotation_keeps_old_tokens_until_their_secret_goes(make_gateway, tmp_path, up):
    gw = make_gateway()
    a = new_secret(gw, tmp_path / "term1")
    b = new_secret(gw, tmp_path / "term2")
    assert re.fullmatch("[0-9a-f]{64}", a) and a != b
    line1 = "AIProxyTokenSecret term1 file:%s\n" % (tmp_path / "term1")
    line2 = "AIProxyTokenSecret term2 file:%s\n" % (tmp_path / "term2")
    legacy = make_token("legacy@example.com")   # no kid: from before key ids

    # One term: the CLI signs with term1 and says so.
    gw.extra_conf = line1
    gw.start()
    old = cli_token(gw, "old@example.com")
    assert kid(old) == "term1"
    jwt.decode(old, a, algorithms=["HS256"])
    assert chat(gw, old) == "This is a fake reply."
    assert chat(gw, legacy) == "This is a fake reply."

    # A new secret added after it: new tokens carry its kid, old ones work.
    restart(gw, line1 + line2)
    new = cli_token(gw, "new@example.com")
    assert kid(new) == "term2"
    jwt.decode(new, b, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new, a, algorithms=["HS256"])
    assert chat(gw, old) == "This is a fake reply."
    assert chat(gw, new) == "This is a fake reply."
    assert chat(gw, legacy) == "This is a fake reply."
    # A kid does not lend its name: term2's kid on a term1 signature.
    forged = jwt.encode({"email": "x@example.com", "iat": int(time.time())}, a,
                        algorithm="HS256", headers={"kid": "term2"})
    assert "signature" in refused(gw, forged)

    # term1 removed: its tokens are refused, term2's still work.
    restart(gw, line2)
    msg = refused(gw, old)
    assert "key id" in msg and "term1" not in msg
    assert chat(gw, new) == "This is a fake reply."
    assert chat(gw, legacy) == "This is a fake reply."   # the id-less secret stays
    log = gw.error_log()
    assert a not in log and b not in log


def test_unknown_kid_refused(gateway, up):
    tok = jwt.encode({"email": "kid@example.com", "iat": int(time.time())}, TOKEN_SECRET,
                     algorithm="HS256", headers={"kid": "no-such-key"})
    msg = refused(gateway, tok)
    assert "key id" in msg and "no-such-key" not in msg
    # The same token without a kid is the id-less secret's, and works.
    assert chat(gateway, make_token("kid@example.com")) == "This is a fake reply."
    r = httpx.get(gateway.url("/openai/v1/models"), headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------- the CLI

def test_secret_new_prints_or_writes(gateway, tmp_path):
    seen = set()
    for _ in range(3):
        rc, out, err = cli(gateway, "secret", "new")
        assert rc == 0 and err == ""
        assert re.fullmatch("[0-9a-f]{64}\n", out)
        seen.add(out)
    assert len(seen) == 3
    path = tmp_path / "s1"
    rc, out, _ = cli(gateway, "secret", "new", str(path))
    assert rc == 0 and "AIProxyTokenSecret KEY-ID file:%s" % path in out
    value = path.read_text()
    assert re.fullmatch("[0-9a-f]{64}\n", value) and value.strip() not in out
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Never over an existing secret.
    rc, _, err = cli(gateway, "secret", "new", str(path))
    assert rc == 2 and "exists" in err and path.read_text() == value
    # Needs no configuration at all.
    p = subprocess.run([CLI, "-f", str(tmp_path / "none.conf"), "secret", "new"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and len(p.stdout.strip()) == 64
    rc, _, err = cli(gateway, "secret", "bogus")
    assert rc == 1 and "secret new" in err


def test_secret_list_names_but_never_shows(make_gateway, tmp_path):
    gw = make_gateway()
    a = new_secret(gw, tmp_path / "fall")
    b = new_secret(gw, tmp_path / "spring")
    gw.extra_conf = ("AIProxyTokenSecret fall file:%s\nAIProxyTokenSecret spring file:%s\n"
                     % (tmp_path / "fall", tmp_path / "spring"))
    gw.write_conf(gw.extra_conf)
    rc, out, err = cli(gw, "secret", "list")
    assert rc == 0, err
    rows = {l.split()[0]: l for l in out.splitlines()[1:]}
    assert list(rows) == ["-", "fall", "spring"]        # configuration order
    assert "env:AIPROXY_TOKEN_SECRET" in rows["-"] and "no-kid" in rows["-"]
    assert "signs" in rows["spring"] and "signs" not in rows["fall"]
    assert "file:%s" % (tmp_path / "fall") in rows["fall"]
    assert all(l.rstrip().endswith("ok") for l in rows.values())
    for value in (a, b, TOKEN_SECRET):
        assert value not in out and value not in err
    # A bad secret: listed, and the exit status and message say which.
    short = tmp_path / "short"
    short.write_text("too short\n")
    gw.write_conf(gw.extra_conf + "AIProxyTokenSecret shorty file:%s\n" % short)
    rc, out, err = cli(gw, "secret", "list")
    assert rc == 2 and "shorty" in out and "BAD" in out
    assert "AIProxyTokenSecret shorty" in err and "at least 32" in err
    assert "too short" not in out + err
    # And the token command refuses to sign with it.
    rc, _, err = cli(gw, "token", "a@example.com")
    assert rc == 2 and "AIProxyTokenSecret shorty" in err


# ---------------------------------------------------------------- lifetime

def test_default_lifetime_on_cli_tokens(gateway):
    tok = cli_token(gateway, "term@example.com")
    claims = jwt.decode(tok, TOKEN_SECRET, algorithms=["HS256"])
    assert claims["exp"] == claims["iat"] + TERM
    assert kid(tok) is None        # signed by the id-less secret, as before
    me = httpx.get(gateway.url("/usage/me"), headers={"Authorization": "Bearer " + tok})
    assert me.status_code == 200


@pytest.fixture(scope="module")
def google():
    g = GoogleFake().start()
    yield g
    g.stop()


@pytest.mark.parametrize("lifetime,expect", [(None, TERM), (0, None), (7200, 7200)])
def test_sign_in_tokens_newest_kid_and_lifetime(make_gateway, google, tmp_path, lifetime,
                                                expect):
    gw = make_gateway()
    b = new_secret(gw, tmp_path / "now")
    conf = google.gateway_conf(lifetime=lifetime) + \
        "\nAIProxyTokenSecret now file:%s\n" % (tmp_path / "now")
    gw.extra_conf = conf
    gw.start()
    r = httpx.get(gw.url("/token"), params={"credential": google.id_token("ada@example.com")},
                  timeout=30)
    assert r.status_code == 200, r.text
    tok = r.json()["token"]
    assert kid(tok) == "now"
    claims = jwt.decode(tok, b, algorithms=["HS256"], options={"verify_exp": True})
    if expect is None:
        assert "exp" not in claims
    else:
        assert claims["exp"] == claims["iat"] + expect
    me = httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + tok})
    assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
    assert "issued a token to ada@example.com (key id now)" in gw.error_log()
