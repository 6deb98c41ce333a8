"""GET/POST /token: a Google ID token in, a gateway token out. Every check
Google asks for, each with a bad token of its own kind, against a loopback
JWKS server (t/google_fake.py) that the gateway is configured to trust;
the key cache's Cache-Control and refetch rules; key rotation; failure of
the JWKS endpoint; no credential or token in any log."""
import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest

from conftest import ADMIN, TOKEN_SECRET, Gateway, make_token
from google_fake import CLIENT_ID, GoogleFake

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def get_token(gw, credential, **kw):
    return httpx.get(gw.url("/token"), params={"credential": credential}, timeout=30, **kw)


def post_token(gw, fields, cookies=None):
    return httpx.post(gw.url("/token"), data=fields, cookies=cookies, timeout=30)


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"]
    return err


@pytest.fixture(scope="module")
def google():
    g = GoogleFake().start()
    yield g
    g.stop()


def start(store, upstream, conf):
    return Gateway(store, upstream, extra_conf=conf).start()


@pytest.fixture(scope="module")
def gw(store, upstream, google):
    g = start(store, upstream, google.gateway_conf())
    yield g
    g.stop()


# --- success ---------------------------------------------------------------

def test_get_issues_a_working_token(gw, google):
    r = get_token(gw, google.id_token("Ada@Example.com"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"token", "email"}
    assert body["email"] == "ada@example.com"
    claims = jwt.decode(body["token"], TOKEN_SECRET, algorithms=["HS256"])
    assert claims["email"] == "ada@example.com"
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["exp"] == claims["iat"] + 120 * 86400  # AIProxyTokenLifetime's default
    me = httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + body["token"]})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ada@example.com"


def test_post_form_as_google_identity_services_sends_it(gw, google):
    cred = google.id_token("bob@example.com")
    r = post_token(gw, {"credential": cred, "g_csrf_token": "abc123"},
                   cookies={"g_csrf_token": "abc123"})
    assert r.status_code == 200, r.text
    assert r.json()["email"] == "bob@example.com"
    # Without the CSRF field (an API client) the form works too.
    assert post_token(gw, {"credential": cred}).status_code == 200


def test_post_with_mismatched_csrf_cookie(gw, google):
    r = post_token(gw, {"credential": google.id_token(), "g_csrf_token": "abc"},
                   cookies={"g_csrf_token": "other"})
    assert_error(r, 400, "csrf_mismatch")
    r = post_token(gw, {"credential": google.id_token(), "g_csrf_token": "abc"})
    assert_error(r, 400, "csrf_mismatch")


def test_issuer_without_scheme_is_google_too(gw, google):
    r = get_token(gw, google.id_token(iss="accounts.google.com"))
    assert r.status_code == 200, r.text


def test_hosted_domain_in_list_admits_another_email_domain(gw, google):
    r = get_token(gw, google.id_token("carol@alias.example.org", hd="example.com"))
    assert r.status_code == 200, r.text


def test_config_endpoint_tells_the_page_the_client_id(gw):
    r = httpx.get(gw.url("/token/config"))
    assert r.status_code == 200
    assert r.json() == {"client_id": CLIENT_ID,
                        "allowed_domains": ["example.com", "study.example.edu"],
                        "require_hosted_domain": False, "oidc_signin": None,
                        "oidc_signout": None}


# --- each bad credential, with its own status and code --------------------

def test_missing_credential(gw):
    assert_error(httpx.get(gw.url("/token")), 400, "missing_credential")
    assert_error(get_token(gw, ""), 400, "missing_credential")
    assert_error(post_token(gw, {"other": "x"}), 400, "missing_credential")


def test_not_a_jwt(gw):
    assert_error(get_token(gw, "not-a-jwt"), 400, "malformed_credential")
    assert_error(get_token(gw, "a.b.c"), 400, "malformed_credential")


def test_wrong_signature(gw, google):
    impostor = google.add_key("impostor", publish=False)
    # Signed by another key but naming a published kid.
    cred = google.id_token(key=impostor, kid=google.current.kid)
    assert_error(get_token(gw, cred), 401, "bad_signature")
    # A valid token with its payload changed.
    h, p, s = google.id_token("dan@example.com").split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=="))
    payload["email"] = ADMIN
    forged = ".".join([h, b64(json.dumps(payload).encode()), s])
    assert_error(get_token(gw, forged), 401, "bad_signature")


def test_unknown_kid(gw, google):
    stranger = google.add_key("never-published", publish=False)
    assert_error(get_token(gw, google.id_token(key=stranger)), 401, "unknown_key")


def test_wrong_audience(gw, google):
    err = assert_error(get_token(gw, google.id_token(aud="someone-else.apps.googleusercontent.com")),
                       401, "wrong_audience")
    assert "client ID" in err["message"]
    assert_error(get_token(gw, google.id_token(aud=None)), 401, "wrong_audience")


def test_wrong_issuer(gw, google):
    assert_error(get_token(gw, google.id_token(iss="https://evil.example.com")),
                 401, "wrong_issuer")
    assert_error(get_token(gw, google.id_token(iss=None)), 401, "wrong_issuer")


def test_expired(gw, google):
    now = int(time.time())
    assert_error(get_token(gw, google.id_token(iat=now - 7200, exp=now - 3600)),
                 401, "expired")


def test_issued_in_the_future(gw, google):
    now = int(time.time())
    assert_error(get_token(gw, google.id_token(iat=now + 3600, exp=now + 7200)),
                 401, "not_yet_valid")


def test_unverified_email(gw, google):
    assert_error(get_token(gw, google.id_token(email_verified=False)), 403, "email_unverified")
    assert_error(get_token(gw, google.id_token(email_verified=None)), 403, "email_unverified")


def test_other_domain(gw, google):
    err = assert_error(get_token(gw, google.id_token("eve@other.org")), 403, "domain_not_allowed")
    assert "other.org" in err["message"]
    assert_error(get_token(gw, google.id_token("eve@gmail.com")), 403, "domain_not_allowed")


def test_no_email(gw, google):
    assert_error(get_token(gw, google.id_token(None)), 401, "no_email")


def test_algorithm_confusion_is_refused(gw, google):
    """HS256 with Google's public key as the HMAC secret: libjwt would
    verify it; the gateway must refuse it before any key lookup."""
    header = b64(json.dumps({"alg": "HS256", "kid": google.current.kid, "typ": "JWT"}).encode())
    payload = b64(json.dumps(google.claims(ADMIN)).encode())
    sig = b64(hmac.new(google.current.public_pem, (header + "." + payload).encode(),
                       hashlib.sha256).digest())
    assert_error(get_token(gw, header + "." + payload + "." + sig), 401, "wrong_algorithm")
    none = b64(json.dumps({"alg": "none", "kid": google.current.kid}).encode())
    assert_error(get_token(gw, none + "." + payload + "."), 401, "wrong_algorithm")


def test_gateway_token_is_not_a_credential(gw):
    assert_error(get_token(gw, make_token("x@example.com")), 401, "wrong_algorithm")


def test_wrong_method(gw):
    r = httpx.delete(gw.url("/token"))
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


def test_json_post_is_refused_with_a_hint(gw, google):
    r = httpx.post(gw.url("/token"), json={"credential": google.id_token()})
    assert_error(r, 415, "unsupported_media_type")


# --- hosted domain required -----------------------------------------------

def test_missing_hd_where_required(store, upstream, google):
    g = start(store, upstream, google.gateway_conf(domains=("example.com", "gmail.com"),
                                                   require_hd=True))
    try:
        assert_error(get_token(g, google.id_token("frank@gmail.com")), 403,
                     "hosted_domain_required")
        assert_error(get_token(g, google.id_token("frank@example.com", hd=None)), 403,
                     "hosted_domain_required")
        assert get_token(g, google.id_token("frank@example.com")).status_code == 200
        assert httpx.get(g.url("/token/config")).json()["require_hosted_domain"] is True
    finally:
        g.stop()


def test_domains_listed_mean_managed_accounts_by_default(store, upstream, google):
    """A consumer Google account opened with a university address passes
    the domain check but outlives the person's enrolment: with domains
    listed and nothing said, only Workspace accounts (hd) sign in."""
    conf = "\n".join(l for l in google.gateway_conf().splitlines()
                     if not l.startswith("AIProxyRequireHostedDomain")) + "\n"
    g = start(store, upstream, conf)
    try:
        assert_error(get_token(g, google.id_token("frank@example.com", hd=None)), 403,
                     "hosted_domain_required")
        assert get_token(g, google.id_token("frank@example.com")).status_code == 200
        assert httpx.get(g.url("/token/config")).json()["require_hosted_domain"] is True
    finally:
        g.stop()
    # AIProxyRequireManagedAccount Off says otherwise, for both sign-ins.
    g = start(store, upstream, conf + "AIProxyRequireManagedAccount Off\n")
    try:
        assert get_token(g, google.id_token("frank@example.com", hd=None)).status_code == 200
    finally:
        g.stop()


def test_any_domain_when_none_listed(store, upstream, google):
    g = start(store, upstream, google.gateway_conf(domains=()))
    try:
        assert get_token(g, google.id_token("grace@gmail.com")).status_code == 200
    finally:
        g.stop()


# --- keys: cache, rotation, refetch, failure -------------------------------

def test_keys_cached_per_cache_control(store, upstream):
    google = GoogleFake(max_age=2).start()
    g = start(store, upstream, google.gateway_conf())
    try:
        for _ in range(4):
            assert get_token(g, google.id_token()).status_code == 200
        assert google.fetches == 1
        time.sleep(2.3)
        assert get_token(g, google.id_token()).status_code == 200
        assert google.fetches == 2
    finally:
        g.stop()
        google.stop()


def test_unknown_kid_refetches_at_most_once_a_minute(store, upstream):
    google = GoogleFake().start()
    g = start(store, upstream, google.gateway_conf())
    try:
        assert get_token(g, google.id_token()).status_code == 200
        assert google.fetches == 1
        for i in range(5):
            r = get_token(g, google.id_token(kid="made-up-%d" % i))
            assert_error(r, 401, "unknown_key")
        assert google.fetches == 1
    finally:
        g.stop()
        google.stop()


def test_rotation_new_kid_fetched_on_first_sight(store, upstream):
    """Google publishes a new key; the first credential signed with it
    makes the gateway fetch again (refetch interval 2 s here)."""
    google = GoogleFake().start()
    g = start(store, upstream, google.gateway_conf(refetch=2))
    try:
        old = google.current
        assert get_token(g, google.id_token()).status_code == 200
        # Within the interval an unknown kid is refused without a fetch.
        assert_error(get_token(g, google.id_token(kid="made-up")), 401, "unknown_key")
        assert google.fetches == 1
        time.sleep(2.2)
        new = google.rotate(keep_old=True)
        assert get_token(g, google.id_token(key=new)).status_code == 200
        assert google.fetches == 2
        # Both keys are published: both verify, with no more fetches.
        assert get_token(g, google.id_token(key=old)).status_code == 200
        assert google.fetches == 2
    finally:
        g.stop()
        google.stop()


def test_rotation_old_key_dropped_after_expiry(store, upstream):
    google = GoogleFake(max_age=1).start()
    g = start(store, upstream, google.gateway_conf())
    try:
        old = google.current
        assert get_token(g, google.id_token()).status_code == 200
        new = google.rotate()
        time.sleep(1.3)
        assert get_token(g, google.id_token(key=new)).status_code == 200
        assert google.fetches == 2
        assert_error(get_token(g, google.id_token(key=old)), 401, "unknown_key")
    finally:
        g.stop()
        google.stop()


@pytest.mark.expect_log(r"AIP04006")
def test_jwks_unreachable_is_503_then_recovers(store, upstream):
    google = GoogleFake().start()
    google.fail_status = 500
    g = start(store, upstream, google.gateway_conf())
    try:
        r = get_token(g, google.id_token())
        assert_error(r, 503, "keys_unavailable")
        assert r.headers["retry-after"]
        assert "AIP04006" in g.error_log()
        google.fail_status = None
        assert get_token(g, google.id_token()).status_code == 200
    finally:
        g.stop()
        google.stop()


@pytest.mark.expect_log(r"AIP04006")
def test_jwks_server_gone_is_503(store, upstream):
    google = GoogleFake().start()
    conf = google.gateway_conf()
    google.stop()
    g = start(store, upstream, conf)
    try:
        assert_error(get_token(g, google.id_token()), 503, "keys_unavailable")
    finally:
        g.stop()


@pytest.mark.expect_log(r"AIP04006")
def test_stale_keys_serve_while_google_is_down(store, upstream):
    google = GoogleFake(max_age=1).start()
    g = start(store, upstream, google.gateway_conf())
    try:
        assert get_token(g, google.id_token()).status_code == 200
        google.fail_status = 503
        time.sleep(1.3)
        assert get_token(g, google.id_token()).status_code == 200
        assert google.fetches == 2
    finally:
        g.stop()
        google.stop()


def test_weak_keys_are_not_trusted(store, upstream):
    google = GoogleFake().start()
    weak = google.add_key("weak-1024", bits=1024)
    g = start(store, upstream, google.gateway_conf())
    try:
        assert_error(get_token(g, google.id_token(key=weak)), 401, "unknown_key")
        assert get_token(g, google.id_token()).status_code == 200
    finally:
        g.stop()
        google.stop()


# --- issued tokens: lifetime, revocation -----------------------------------

def test_token_lifetime(store, upstream, google):
    g = start(store, upstream, google.gateway_conf(lifetime=86400))
    try:
        tok = get_token(g, google.id_token("hana@example.com")).json()["token"]
        claims = jwt.decode(tok, TOKEN_SECRET, algorithms=["HS256"])
        assert claims["exp"] == claims["iat"] + 86400
    finally:
        g.stop()


def test_revocation_then_new_sign_in_same_second(gw, google):
    def usage(tok):
        return httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + tok})

    old = get_token(gw, google.id_token("ivan@example.com")).json()["token"]
    assert usage(old).status_code == 200
    r = httpx.post(gw.url("/admin/api/revoke"), json={"email": "ivan@example.com"},
                   headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 200, r.text
    assert_error(usage(old), 401, "token_revoked")
    # At once, within the same second: the new token is issued after it.
    new = get_token(gw, google.id_token("ivan@example.com")).json()["token"]
    assert usage(new).status_code == 200
    assert usage(old).status_code == 401
    # A second revocation covers the token issued in the first one's second.
    r = httpx.post(gw.url("/admin/api/revoke"), json={"email": "ivan@example.com"},
                   headers={"Authorization": "Bearer " + make_token(ADMIN)})
    assert r.status_code == 200
    assert usage(new).status_code == 401


# --- off, misconfigured, logs ---------------------------------------------

def test_sign_in_off_without_client_id(gateway):
    r = get_token(gateway, "a.b.c")
    assert_error(r, 503, "signin_not_configured")
    assert httpx.get(gateway.url("/token/config")).json()["client_id"] is None


@pytest.mark.parametrize("line,message", [
    ("AIProxyGoogleJWKS ftp://example.com/keys", "AIProxyGoogleJWKS"),
    ("AIProxyAllowedDomains exa$mple.com", "AIProxyAllowedDomains"),
    ("AIProxyTokenLifetime -5", "AIProxyTokenLifetime"),
    ("AIProxyGoogleJWKSRefetch 0", "AIProxyGoogleJWKSRefetch"),
    ("<Location /x>\nAIProxyGoogleClientID abc\n</Location>", "AIProxyGoogleClientID"),
])
def test_bad_directives_stop_httpd(store, upstream, line, message):
    rc, out = Gateway(store, upstream, extra_conf=line + "\n").configtest()
    assert rc != 0
    assert message in out


def test_no_credential_or_token_in_logs(gw, google):
    cred = google.id_token("judy@example.com")
    tok = get_token(gw, cred).json()["token"]
    post_token(gw, {"credential": cred})
    get_token(gw, google.id_token("judy@other.org"))
    time.sleep(0.3)
    logs = gw.access_log() + gw.error_log()
    assert "/token?[redacted]" in gw.access_log()
    for secret in (cred, cred.split(".")[2], tok, tok.split(".")[2], TOKEN_SECRET):
        assert secret not in logs
