"""aiproxy-admin against the real store and a running gateway: it reads the
same httpd configuration (Include, IncludeOptional globs, ${ENV}), mints
tokens the gateway accepts, sets and clears caps, revokes, lists usage;
clear messages and exit codes (0 done, 1 usage, 2 configuration/store)."""
import os
import subprocess
import time

import httpx
import jwt
import openai
import pytest
from bson import Int64

from conftest import ROOT, TOKEN_SECRET, Gateway, make_token

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

CLI = os.path.join(ROOT, "build", "aiproxy-admin")


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-f", "Makefile.apxs", "cli"], cwd=ROOT, check=True)


@pytest.fixture(scope="module")
def gw(store, upstream):
    # An extra file under conf.d/, which httpd.conf pulls in with an
    # IncludeOptional glob: the CLI must read it too.
    with Gateway(store, upstream, extra_conf="AIProxyTokenLifetime 3600\n"
                 "AIProxyMonthlyCap 1.75\n") as g:
        yield g


def cli(gw, *args, env=None, conf=""):
    e = dict(gw.env)
    e.update(env or {})
    conf = gw.conf if conf == "" else conf   # the gateway's own, unless given
    cmd = [CLI] + (["-f", conf] if conf else []) + list(args)
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def me(gw, token):
    return httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + token})


def test_help(gw):
    for flag in ("--help", "-h", "help"):
        rc, out, err = cli(gw, flag, conf=None)
        assert rc == 0 and err == ""
        for word in ("token EMAIL", "cap set WHO USD", "cap clear WHO", "revoke EMAIL",
                     "usage [--month YYYY-MM]", "secret new [FILE]", "secret list",
                     "exit status"):
            assert word in out
    rc, out, _ = cli(gw, "cap", "--help")
    assert rc == 0 and "usage:" in out


@pytest.mark.parametrize("args,fragment", [
    ((), "give a command"),
    (("frobnicate",), "unknown command 'frobnicate'"),
    (("token",), "give an EMAIL"),
    (("token", "not-an-email"), "not an email"),
    (("token", "a@example.com", "--days", "x"), "--days"),
    (("token", "a@example.com", "--days", "-1"), "--days"),
    (("cap",), "cap set WHO USD"),
    (("cap", "set", "a@example.com"), "give WHO and USD"),
    (("cap", "set", "a@example.com", "1.5e3"), "decimal"),
    (("cap", "set", "a@example.com", "-2"), "decimal"),
    (("cap", "set", "nobody", "1"), "not an email or @domain"),
    (("cap", "clear", "a@example.com", "1"), "WHO only"),
    (("revoke",), "give one EMAIL"),
    (("revoke", "@example.com"), "not an email"),
    (("usage", "--month", "2025-13"), "YYYY-MM"),
    (("usage", "--bogus"), "unexpected argument"),
])
def test_usage_errors_exit_1(gw, args, fragment):
    rc, out, err = cli(gw, *args)
    assert rc == 1, (out, err)
    assert fragment in err
    assert "aiproxy-admin --help" in err
    assert out == ""


def test_token_works_on_the_gateway(gw):
    rc, out, err = cli(gw, "token", "Student1@Example.com")
    assert rc == 0, err
    token = out.strip()
    claims = jwt.decode(token, TOKEN_SECRET, algorithms=["HS256"])
    assert claims["email"] == "student1@example.com"
    assert abs(claims["iat"] - time.time()) < 5
    # AIProxyTokenLifetime from conf.d/extra.conf, read through the glob.
    assert claims["exp"] == claims["iat"] + 3600
    assert me(gw, token).status_code == 200


def test_token_days(gw):
    rc, out, _ = cli(gw, "token", "student2@example.com", "--days", "7")
    assert rc == 0
    claims = jwt.decode(out.strip(), TOKEN_SECRET, algorithms=["HS256"])
    assert claims["exp"] == claims["iat"] + 7 * 86400
    rc, out, _ = cli(gw, "token", "student2@example.com", "--days", "0")
    assert "exp" not in jwt.decode(out.strip(), TOKEN_SECRET, algorithms=["HS256"])


def test_cap_set_and_clear(gw):
    rc, out, err = cli(gw, "cap", "set", "capped@example.com", "0.50")
    assert rc == 0, err
    assert "capped@example.com" in out and "0.5" in out
    assert gw.db().users.find_one({"_id": "capped@example.com"})["cap"] == Int64(5 * 10 ** 11)
    assert me(gw, make_token("capped@example.com")).json()["cap"] == "0.5"
    rc, out, _ = cli(gw, "cap", "clear", "capped@example.com")
    assert rc == 0 and "cleared" in out
    assert "cap" not in gw.db().users.find_one({"_id": "capped@example.com"})
    assert me(gw, make_token("capped@example.com")).json()["cap"] == "1.75"


def test_domain_cap_and_list(gw):
    assert cli(gw, "cap", "set", "@cli-domain.edu", "0.3")[0] == 0
    assert me(gw, make_token("x@cli-domain.edu")).json()["cap"] == "0.3"
    rc, out, _ = cli(gw, "cap", "list")
    assert rc == 0
    line = [l for l in out.splitlines() if l.startswith("@cli-domain.edu")][0]
    assert "0.3" in line


def test_revoke_then_new_token_at_once(gw):
    who = "revoked-cli@example.com"
    old = cli(gw, "token", who)[1].strip()
    assert me(gw, old).status_code == 200
    rc, out, err = cli(gw, "revoke", who)
    assert rc == 0, err
    assert who in out
    r = me(gw, old)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
    new = cli(gw, "token", who)[1].strip()
    assert me(gw, new).status_code == 200
    doc = gw.db().users.find_one({"_id": who})
    # iat may be a second ahead: issued after the revocation's second.
    claims = jwt.decode(new, TOKEN_SECRET, algorithms=["HS256"], options={"verify_iat": False})
    assert claims["iat"] > doc["revoked_at"]


def test_usage(gw, up):
    token = cli(gw, "token", "spender@example.com")[1].strip()
    client = openai.OpenAI(base_url=gw.openai_base, api_key=token)
    client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "hello there world"}])
    month = time.strftime("%Y-%m", time.gmtime())
    rc, out, err = cli(gw, "usage", "--month", month)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["MONTH", "EMAIL"]
    row = [l for l in lines if "spender@example.com" in l][0].split()
    # month, email, spent, requests, reserved, cap
    assert row == [month, "spender@example.com", "0.00000345", "1", "0", "1.75"]
    rc, out, _ = cli(gw, "usage", "--month", month, "--email", "spender@example.com")
    assert rc == 0 and len([l for l in out.splitlines() if "@" in l]) == 1
    assert "total (1 users)" in out
    rc, out, _ = cli(gw, "usage", "--month", "2001-01")
    assert rc == 0 and "total (0 users)" in out


def test_store_down_exits_2(gw):
    rc, out, err = cli(gw, "usage", env={"AIPROXY_STORE": "mongodb://127.0.0.1:1"})
    assert rc == 2 and out == ""
    assert "store" in err
    rc, _, err = cli(gw, "cap", "set", "a@example.com", "1",
                     env={"AIPROXY_STORE": "mongodb://127.0.0.1:1"})
    assert rc == 2


def test_config_errors_exit_2(gw, tmp_path):
    rc, _, err = cli(gw, "usage", conf=str(tmp_path / "missing.conf"))
    assert rc == 2 and "cannot read" in err
    env = dict(gw.env)
    del env["AIPROXY_STORE"]
    p = subprocess.run([CLI, "-f", gw.conf, "usage"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "AIProxyStore: variable ${AIPROXY_STORE} is not set" in p.stderr
    rc, _, err = cli(gw, "token", "a@example.com", env={"AIPROXY_TOKEN_SECRET": ""})
    assert rc == 2 and "AIPROXY_TOKEN_SECRET" in err


def test_secret_from_file_and_aiproxy_conf(gw, tmp_path):
    """A stand-alone configuration: Define, a relative Include, file: secret."""
    secret = tmp_path / "secret"
    secret.write_text(TOKEN_SECRET + "\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "store.conf").write_text(
        'AIProxyStore "${STORE}"\nAIProxyStoreDatabase ${DB}\n')
    main = tmp_path / "conf" / "main.conf"
    main.write_text("ServerRoot %s\nDefine DB %s\n# a comment\nInclude conf/store.conf\n"
                    "AIProxyTokenSecret \\\n    file:%s\n" % (tmp_path, gw.db_name, secret))
    p = subprocess.run([CLI, "-f", str(main), "token", "file@example.com"],
                       env={"STORE": gw.store.uri, "PATH": os.environ["PATH"]},
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert me(gw, p.stdout.strip()).status_code == 200
    p = subprocess.run([CLI, "-f", str(main), "cap", "set", "viafile@example.com", "1"],
                       env={"STORE": gw.store.uri, "PATH": os.environ["PATH"]},
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert gw.db().users.find_one({"_id": "viafile@example.com"})["cap"] == Int64(10 ** 12)
