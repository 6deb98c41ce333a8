"""Sign-in through mod_auth_openidc with a real OpenID provider on loopback
(oidc-provider, t/oidc_provider.mjs): headless Chromium goes through the
whole code flow (the dashboard's button, the provider's login page and
consent, the redirect back), gets a token and uses it with the openai SDK;
the wrong domain, an unverified email, a consumer account and a revoked
user are refused with clear pages; an expired session needs a new
sign-in; no secret or token reaches the logs."""
import datetime
import json
import os
import secrets
import subprocess
import time

import httpx
import jwt
import openai
import pytest
from bson import Int64

from conftest import ADMIN, ROOT, TOKEN_SECRET, Gateway, free_port, make_token

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = os.environ.get("AIPROXY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
NPM_PREFIX = os.path.join(ROOT, ".tools", "npm-oidc")
MODULES = "/usr/lib/apache2/modules"
TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e"
CLIENT_SECRET = "op-secret-" + secrets.token_hex(16)
PASSPHRASE = "op-passphrase-" + secrets.token_hex(16)
# Seconds of inactivity after which mod_auth_openidc's session ends.
IDLE = 10   # the least mod_auth_openidc allows

USERS = {
    # Google-style: a Workspace account (hd).
    "alice@uni.example": {"email": "alice@uni.example", "email_verified": True,
                          "hd": "uni.example", "name": "Alice",
                          "groups": ["staff", "course-cs102", "course-nosuch", "course-BAD!"]},
    # Entra-style: an account of a configured tenant (tid), no hd.
    "frank@college.example": {"email": "Frank@College.example", "email_verified": True,
                              "tid": TENANT},
    "erin@uni.example": {"email": "erin@uni.example", "email_verified": True,
                         "hd": "uni.example"},
    "mallory@elsewhere.example": {"email": "mallory@elsewhere.example",
                                  "email_verified": True, "hd": "elsewhere.example"},
    # A personal account opened with a university address: no hd, no tid.
    "carol@uni.example": {"email": "carol@uni.example", "email_verified": True},
    "dave@uni.example": {"email": "dave@uni.example", "email_verified": False,
                         "hd": "uni.example"},
    # Another tenant's account with an allowed address.
    "trent@college.example": {"email": "trent@college.example", "email_verified": True,
                              "tid": "00000000-0000-4000-8000-000000000000"},
}

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(os.path.join(MODULES, "mod_auth_openidc.so")) or
        not os.path.isdir(os.path.join(NPM_PREFIX, "node_modules", "oidc-provider")),
        reason="needs mod_auth_openidc and oidc-provider (tools/setup.sh --test)"),
    # The provider is plain http on loopback; a site's is https.
    pytest.mark.expect_log(r'\(http\) of the configured OIDC\w+ SHOULD be "https"'),
]


class Provider:
    """oidc-provider in its own node process."""

    def __init__(self, redirect_uri, tmp):
        self.port = free_port()
        self.issuer = "http://127.0.0.1:%d" % self.port
        cfg = os.path.join(tmp, "op.json")
        with open(cfg, "w") as f:
            json.dump({"prefix": NPM_PREFIX, "port": self.port, "client_id": "aiproxy",
                       "client_secret": CLIENT_SECRET, "redirect_uri": redirect_uri,
                       "post_logout_redirect_uri": redirect_uri.replace("/signin/callback",
                                                                        "/admin/"),
                       "users": USERS}, f)
        self.log = open(os.path.join(tmp, "op.log"), "w")
        self.proc = subprocess.Popen(["node", os.path.join(ROOT, "t/oidc_provider.mjs"), cfg],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", "oidc-provider did not start"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def oidc_conf(gw_port, op):
    return """
LoadModule authn_core_module %(m)s/mod_authn_core.so
LoadModule authz_user_module %(m)s/mod_authz_user.so
LoadModule auth_openidc_module %(m)s/mod_auth_openidc.so
# mod_auth_openidc logs tokens at debug: never below info.
LogLevel ${AIPROXY_LOGLEVEL} auth_openidc:warn
OIDCProviderMetadataURL %(issuer)s/.well-known/openid-configuration
OIDCClientID aiproxy
OIDCClientSecret ${OIDC_CLIENT_SECRET}
OIDCRedirectURI http://127.0.0.1:%(port)d/signin/callback
OIDCCryptoPassphrase ${OIDC_PASSPHRASE}
OIDCScope "openid email profile"
OIDCPKCEMethod S256
# The code comes back in a POST body, not in a URL the access log records.
OIDCResponseMode form_post
OIDCRemoteUserClaim email
OIDCPassClaimsAs environment
OIDCSessionInactivityTimeout %(idle)d
OIDCSessionMaxDuration 3600
<Location /signin>
    AuthType openid-connect
    Require valid-user
    SetHandler aiproxy-oidc
</Location>
AIProxyOIDCSignIn /signin
# Absolute: it becomes the provider's post_logout_redirect_uri.
AIProxyOIDCSignOut /signin/callback?logout=http%%3A%%2F%%2F127.0.0.1%%3A%(port)d%%2Fadmin%%2F
AIProxyAllowedDomains uni.example college.example
AIProxyOIDCTenants %(tenant)s
AIProxyOIDCCourseGroups course-
""" % {"m": MODULES, "issuer": op.issuer, "port": gw_port, "idle": IDLE, "tenant": TENANT}


@pytest.fixture(scope="module")
def op_gw(store, upstream, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("op"))
    g = Gateway(store, upstream, loglevel="debug",
                env={"OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_PASSPHRASE": PASSPHRASE})
    op = Provider("http://127.0.0.1:%d/signin/callback" % g.port, tmp)
    g.extra_conf = oidc_conf(g.port, op)
    g.start()
    yield op, g
    g.stop()
    op.stop()


@pytest.fixture(scope="module")
def gw(op_gw):
    return op_gw[1]


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser, gw):
    ctx = browser.new_context(base_url=gw.base)
    p = ctx.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    ctx.close()
    assert errors == []


def provider_login(page, login):
    """The provider's own pages: login (any password), then consent."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any-password")
    page.click("button[type=submit]")
    page.wait_for_selector("button:has-text('Continue')")
    page.click("button:has-text('Continue')")


def sign_in_at(page, login, path="/signin"):
    page.goto(path)
    provider_login(page, login)


def refusal(page):
    expect(page.locator("h1")).to_have_text("Sign-in refused")
    return page.locator("#reason").get_attribute("data-code"), page.locator("#reason").inner_text()


def test_dashboard_sign_in_through_the_provider_then_the_sdk(page, gw):
    page.goto("/admin/")
    link = page.locator("#oidc-signin")
    expect(link).to_be_visible()
    link.click()
    # The provider's login page, not ours.
    assert page.url.startswith("http://127.0.0.1:") and "/interaction/" in page.url
    provider_login(page, "alice@uni.example")
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#who")).to_have_text("alice@uni.example")
    token = page.locator("#token").inner_text()
    # The token never rode in a URL.
    assert "signin=oidc" not in page.url and token not in page.url
    claims = jwt.decode(token, TOKEN_SECRET, algorithms=["HS256"])
    assert claims["email"] == "alice@uni.example"
    client = openai.OpenAI(base_url=gw.openai_base, api_key=token)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert gw.db().months.find_one({"email": "alice@uni.example"})["requests"] >= 1


def test_sign_out_ends_the_providers_session_here(page, gw):
    """On a shared computer, the dashboard's sign-out must not leave a
    session that signs the next person straight back in."""
    sign_in_at(page, "alice@uni.example")
    expect(page.locator("#signed-in")).to_be_visible()
    page.locator("#sign-out").click()
    # mod_auth_openidc's logout, then the provider's own (RP-initiated).
    page.wait_for_selector("button[name=logout]")
    page.click("button[name=logout]")
    expect(page.locator("#signin-title")).to_be_visible()
    r = page.context.request.get("/signin", headers={"Accept": "application/json"},
                                 max_redirects=0)
    assert r.status in (302, 401), r.status
    page.goto("/signin")
    page.wait_for_selector("input[name=login]")


def test_entra_tenant_account_signs_in_lower_cased(page, gw):
    sign_in_at(page, "frank@college.example")
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#who")).to_have_text("frank@college.example")


@pytest.mark.parametrize("login,code,words", [
    ("mallory@elsewhere.example", "domain_not_allowed", "elsewhere.example may not sign in"),
    ("dave@uni.example", "email_unverified", "not verified"),
    ("carol@uni.example", "managed_account_required", "not a personal one"),
    ("trent@college.example", "managed_account_required", "not a personal one"),
])
def test_refused_with_a_clear_page(page, gw, login, code, words):
    sign_in_at(page, login)
    got, text = refusal(page)
    assert got == code
    assert words in text
    assert page.locator("a", has_text="Back to the dashboard").count() == 1
    # Nor does the dashboard's fetch get a token with that session.
    r = page.context.request.get("/signin", headers={"Accept": "application/json"})
    assert r.status == 403
    assert r.json()["error"]["code"] == code


def test_revoked_user_refused_until_they_sign_in_again(page, gw, browser):
    sign_in_at(page, "erin@uni.example")
    expect(page.locator("#signed-in")).to_be_visible()
    old = page.locator("#token").inner_text()
    time.sleep(1.1)     # revocation in a later second than the sign-in
    r = httpx.post(gw.url("/admin/api/revoke"), json={"email": "erin@uni.example"},
                   headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 200, r.text
    assert httpx.get(gw.url("/usage/me"),
                     headers={"Authorization": "Bearer " + old}).status_code == 401
    # The session made before the revocation yields no new token.
    r = page.context.request.get("/signin", headers={"Accept": "application/json"})
    assert r.status == 403 and r.json()["error"]["code"] == "token_revoked"
    page.goto("/signin")
    code, text = refusal(page)
    assert code == "token_revoked" and "revoked" in text
    # Authenticating again (a new session) is a new sign-in.
    time.sleep(1.1)
    ctx = browser.new_context(base_url=gw.base)
    try:
        p2 = ctx.new_page()
        sign_in_at(p2, "erin@uni.example")
        expect(p2.locator("#signed-in")).to_be_visible()
    finally:
        ctx.close()


def test_course_choice_needs_membership(page, gw):
    sign_in_at(page, "alice@uni.example", "/signin?course=cs101")
    # Not a member: the dashboard says so and keeps no session.
    expect(page.locator("#signin-error")).to_contain_text("not a member of course cs101")
    r = page.context.request.get("/signin?course=BAD!", headers={"Accept": "application/json"})
    assert r.status == 400


def test_groups_claim_enrols_in_existing_courses(page, gw):
    db = gw.db()
    db.courses.insert_one({"_id": "cs102", "name": "Course cs102", "budget": Int64(10 ** 14),
                           "instructors": [],
                           "created": datetime.datetime.now(datetime.timezone.utc)})
    sign_in_at(page, "alice@uni.example", "/signin?course=cs102")
    expect(page.locator("#signed-in")).to_be_visible()
    claims = jwt.decode(page.locator("#token").inner_text(), TOKEN_SECRET,
                        algorithms=["HS256"])
    assert claims["course"] == "cs102"
    assert db.members.find_one({"course": "cs102", "who": "alice@uni.example"})
    # A group for a course that does not exist creates nothing.
    assert db.courses.find_one({"_id": "nosuch"}) is None
    assert db.members.count_documents({"who": "alice@uni.example"}) == 1


def test_expired_session_needs_a_new_sign_in(page, gw):
    sign_in_at(page, "alice@uni.example")
    expect(page.locator("#signed-in")).to_be_visible()
    r = page.context.request.get("/signin", headers={"Accept": "application/json"})
    assert r.status == 200 and r.json()["email"] == "alice@uni.example"
    time.sleep(IDLE + 1.5)
    # The session is gone: no token, and a browser goes to the provider.
    r = page.context.request.get("/signin", headers={"Accept": "application/json"},
                                 max_redirects=0)
    assert r.status in (302, 401), r.status
    assert "token" not in r.text()
    page.goto("/signin")
    assert page.url.startswith("http://127.0.0.1:") and "/signin" not in page.url.split("?")[0]


def test_forged_claim_headers_are_not_claims(gw):
    """Without mod_auth_openidc's session, headers named like its claims
    get nothing: it redirects to the provider before the handler runs, and
    the handler reads the environment only."""
    r = httpx.get(gw.url("/signin"), headers={
        "Accept": "application/json", "OIDC_CLAIM_email": "admin@example.com",
        "OIDC-CLAIM-email": "admin@example.com", "X-Remote-User": "admin@example.com"})
    assert r.status_code in (302, 401)
    assert "token" not in r.text


def test_handler_without_openid_connect_refuses(store, upstream):
    g = Gateway(store, upstream, extra_conf="""
<Location /open-signin>
    SetHandler aiproxy-oidc
</Location>
""")
    g.start()
    try:
        g.expect_log(r"AIP04500")
        r = httpx.get(g.url("/open-signin"), headers={"Accept": "application/json",
                                                       "OIDC_CLAIM_email": ADMIN})
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "signin_not_configured"
        assert "token" not in r.json()
    finally:
        g.stop()


@pytest.mark.parametrize("line,message", [
    ("AIProxyOIDCSignIn signin", "AIProxyOIDCSignIn"),
    ("AIProxyOIDCSignIn //evil.example/x", "AIProxyOIDCSignIn"),
    ("AIProxyOIDCSignIn /signin", "mod_auth_openidc is not loaded"),
    ("AIProxyOIDCClaim mail email", "AIProxyOIDCClaim"),
    ("AIProxyOIDCClaim email -", "AIProxyOIDCClaim"),
    ("AIProxyOIDCClaim hd bad-name", "AIProxyOIDCClaim"),
    ("AIProxyOIDCTenants not-a-guid", "AIProxyOIDCTenants"),
    ("AIProxyOIDCCourseGroups a,b", "AIProxyOIDCCourseGroups"),
    ("AIProxyOIDCSignOut https://evil.example/", "AIProxyOIDCSignOut"),
    ("AIProxyRequireManagedAccount maybe", "AIProxyRequireManagedAccount"),
    ("<Location /x>\nAIProxyOIDCSignIn /x\n</Location>", "AIProxyOIDCSignIn"),
])
def test_bad_directives_stop_httpd(store, upstream, line, message):
    rc, out = Gateway(store, upstream, extra_conf=line + "\n").configtest()
    assert rc != 0
    assert message in out


def test_no_secret_or_token_in_logs(gw, op_gw, page):
    sign_in_at(page, "alice@uni.example")
    expect(page.locator("#signed-in")).to_be_visible()
    token = page.locator("#token").inner_text()
    time.sleep(0.3)
    logs = gw.access_log() + gw.error_log()
    for secret in (token, token.split(".")[2], TOKEN_SECRET, CLIENT_SECRET, PASSPHRASE):
        assert secret not in logs
    assert "email=alice@uni.example" in gw.access_log()
    # The provider's authorization codes came in POST bodies: none is logged.
    assert "POST /signin/callback HTTP" in gw.access_log()
    assert "code=" not in gw.access_log()


def test_tools_run_signs_in_through_a_provider(store, upstream, browser, tmp_path):
    """tools/run with AIPROXY_OIDC_*: conf/aiproxy.conf's development
    block, the dashboard's button, the provider, a token."""
    addr = "127.0.0.1:%d" % free_port()
    op = Provider("http://%s/signin/callback" % addr, str(tmp_path))
    e = dict(os.environ, OPENAI_API_KEY="sk-test-run", AIPROXY_TOKEN_SECRET="r" * 40,
             MONGODB_URI=store.uri, AIPROXY_LISTEN=addr, AIPROXY_DB="t_run_oidc",
             OPENAI_BASE_URL=upstream.base + "/v1", AIPROXY_LOGLEVEL="info",
             AIPROXY_OIDC_METADATA_URL=op.issuer + "/.well-known/openid-configuration",
             AIPROXY_OIDC_CLIENT_ID="aiproxy", AIPROXY_OIDC_CLIENT_SECRET=CLIENT_SECRET,
             AIPROXY_ALLOWED_DOMAINS="uni.example")
    p = subprocess.Popen([os.path.join(ROOT, "tools", "run")], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    ctx = browser.new_context(base_url="http://" + addr)
    try:
        for line in p.stdout:
            if "/admin/#token=" in line:
                break
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get("http://%s/health" % addr).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        page = ctx.new_page()
        page.goto("/admin/")
        page.locator("#oidc-signin").click()
        provider_login(page, "alice@uni.example")
        expect(page.locator("#who")).to_have_text("alice@uni.example")
        # AIPROXY_ALLOWED_DOMAINS reaches this sign-in too: managed only.
        ctx2 = browser.new_context(base_url="http://" + addr)
        p2 = ctx2.new_page()
        sign_in_at(p2, "carol@uni.example")
        assert refusal(p2)[0] == "managed_account_required"
        ctx2.close()
    finally:
        ctx.close()
        p.terminate()
        p.wait(timeout=15)
        op.stop()
