"""Google's side of "Sign in with Google", on loopback, for the tests.

Google's servers cannot be reached here, so the tests trust this instead:
test RSA keys, a JWKS endpoint that honours the same Cache-Control contract
as https://www.googleapis.com/oauth2/v3/certs (with a fetch counter, key
rotation and failure modes), and ID tokens signed by those keys.

    fake = GoogleFake().start()
    conf = fake.gateway_conf()            # directives pointing httpd at it
    cred = fake.id_token("a@example.com") # a credential as GIS would send
"""
import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "1234567890-test.apps.googleusercontent.com"
ISSUER = "https://accounts.google.com"
JWKS_PATH = "/oauth2/v3/certs"


def b64url_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TestKey:
    """An RSA key pair with a kid, as Google publishes them."""

    def __init__(self, kid, bits=2048):
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.private_pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self):
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}


class GoogleFake:
    def __init__(self, max_age=300):
        self.max_age = max_age
        self.keys = {}
        self.published = []
        self.fetches = 0
        self.fail_status = None      # e.g. 500: answer fetches with an error
        self.lock = threading.Lock()
        self.server = None
        self.current = self.add_key()

    # --- keys -----------------------------------------------------------
    def add_key(self, kid=None, publish=True, bits=2048):
        kid = kid or "test-kid-%d" % (len(self.keys) + 1)
        key = TestKey(kid, bits)
        self.keys[kid] = key
        if publish:
            with self.lock:
                self.published.append(kid)
        return key

    def rotate(self, keep_old=False):
        """Publishes a new signing key; drops the old ones unless keep_old."""
        old = list(self.published)
        key = self.add_key(publish=False)
        with self.lock:
            self.published = (old if keep_old else []) + [key.kid]
        self.current = key
        return key

    def jwks(self):
        with self.lock:
            return {"keys": [self.keys[k].jwk() for k in self.published]}

    # --- ID tokens ------------------------------------------------------
    def claims(self, email="student@example.com", **over):
        now = int(time.time())
        c = {"iss": ISSUER, "azp": CLIENT_ID, "aud": CLIENT_ID,
             "sub": str(10 ** 20 + secrets.randbelow(10 ** 20)), "email": email,
             "email_verified": True, "iat": now, "exp": now + 3600,
             "jti": secrets.token_hex(8)}
        if email:
            c["name"] = email.split("@")[0]
            domain = email.split("@")[-1]
            if domain != "gmail.com":
                c["hd"] = domain
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def id_token(self, email="student@example.com", key=None, kid=None,
                 headers=None, **claims):
        """A credential signed by key (default: the current one). A claim
        given as None is left out; kid overrides the header's kid."""
        key = key or self.current
        hdr = {"kid": kid if kid is not None else key.kid}
        hdr.update(headers or {})
        return jwt.encode(self.claims(email, **claims), key.private_pem,
                          algorithm="RS256", headers=hdr)

    # --- the JWKS endpoint ----------------------------------------------
    @property
    def url(self):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], JWKS_PATH)

    def gateway_conf(self, domains=("example.com", "study.example.edu"),
                     require_hd=False, refetch=None, lifetime=None):
        lines = ["AIProxyGoogleClientID %s" % CLIENT_ID,
                 "AIProxyGoogleJWKS %s" % self.url]
        if domains:
            lines.append("AIProxyAllowedDomains %s" % " ".join(domains))
        # Explicit: with domains, the default is On (managed accounts only).
        lines.append("AIProxyRequireHostedDomain %s" % ("On" if require_hd else "Off"))
        if refetch is not None:
            lines.append("AIProxyGoogleJWKSRefetch %d" % refetch)
        if lifetime is not None:
            lines.append("AIProxyTokenLifetime %d" % lifetime)
        # One child process: the key cache is per process, so fetch counts
        # are exact only with one.
        lines += ["<IfModule mpm_event_module>", "    StartServers 1",
                  "    ServerLimit 1", "    MaxRequestWorkers 32",
                  "    MinSpareThreads 4", "    MaxSpareThreads 64",
                  "</IfModule>"]
        return "\n".join(lines) + "\n"

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != JWKS_PATH:
                    self.send_error(404)
                    return
                with fake.lock:
                    fake.fetches += 1
                    fail = fake.fail_status
                if fail:
                    self.send_response(fail)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(fake.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", "public, max-age=%d, "
                                 "must-revalidate, no-transform" % fake.max_age)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
