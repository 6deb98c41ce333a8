"""The dashboard end to end in headless Chromium (Debian's chromium driven by
Playwright): sign-in with a test ID token (Google is unreachable here, so
the test calls the page's credential callback, as Google's script would),
the student's token, snippet and month; the admin view's filters, sorting,
paging, cap edit, revocation and chart. Screenshots of each view, on a
desktop and on a phone, go to var/test-artifacts/dashboard/ (or
$AIPROXY_ARTIFACTS)."""
import datetime
import os
import subprocess
import sys

import httpx
import jwt
import openai
import pytest
from bson import Int64

from conftest import ADMIN, ROOT, TOKEN_SECRET, Gateway
from google_fake import GoogleFake

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

CHROMIUM = os.environ.get("AIPROXY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
ARTIFACTS = os.environ.get("AIPROXY_ARTIFACTS") or os.path.join(ROOT, "var", "test-artifacts",
                                                                 "dashboard")
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
MONTH = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
TODAY = datetime.datetime.now(datetime.timezone.utc).day
PICO = 10 ** 12
STUDENT = "student.one@example.com"
# Seeded months: (email, spent in micro-dollars, requests).
SEEDED = [("user%02d@example.com" % i, (i * 37 % 13 + 1) * 1000, (i * 5 % 11) + 1)
          for i in range(1, 13)]


def shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    page.screenshot(path=path, full_page=True)
    print("screenshot:", path)
    return path


@pytest.fixture(scope="module")
def google():
    g = GoogleFake().start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def gw(store, upstream, google):
    g = Gateway(store, upstream, extra_conf=google.gateway_conf(),
                loglevel="info").start()
    db = g.db()
    for email, micro, requests in SEEDED:
        spent = micro * 10 ** 6
        db.months.insert_one({"_id": "%s|%s" % (email, MONTH), "email": email, "month": MONTH,
                              "spent": Int64(spent), "reserved": Int64(0), "load": Int64(spent),
                              "requests": Int64(requests), "holds": {}})
    # Request records behind the chart: days 1..today of this month.
    for day in range(1, TODAY + 1):
        for n in range(day % 3 + 1):
            db.requests.insert_one({
                "_id": "seed-%d-%d" % (day, n), "email": SEEDED[n][0], "month": MONTH,
                "time": datetime.datetime.now(datetime.timezone.utc).replace(
                    day=day, hour=10, minute=n, second=0, microsecond=0),
                "endpoint": "chat/completions", "model": "gpt-4o-mini", "provider": "openai",
                "input_tokens": Int64(10), "cached_tokens": Int64(0), "cache_write_tokens": Int64(0),
                "output_tokens": Int64(10), "cost": Int64((day * 7 % 10 + 1) * 10 ** 8),
                "reserved": Int64(0), "status": 200, "estimated": False})
    yield g
    g.stop()


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


class Page:
    """A browser tab on the gateway, Google's servers blocked, dialogs
    accepted, script errors collected."""

    def __init__(self, browser, gw, device):
        self.ctx = browser.new_context(base_url=gw.base, **device)
        self.ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.base)
        self.ctx.route("https://accounts.google.com/**", lambda route: route.abort())
        self.page = self.ctx.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())

    def sign_in(self, credential):
        self.page.goto("/")
        expect(self.page.locator("#signin-title")).to_be_visible()
        self.page.evaluate("c => window.aiproxyCredential({credential: c})", credential)

    def close(self):
        self.ctx.close()
        assert self.errors == []


@pytest.fixture
def desktop(browser, gw):
    p = Page(browser, gw, DESKTOP)
    yield p
    p.close()


@pytest.fixture
def phone(browser, gw):
    p = Page(browser, gw, PHONE)
    yield p
    p.close()


def test_sign_in_and_student_view(desktop, gw, google, up):
    page = desktop.page
    page.goto("/")
    assert page.url == gw.base + "/admin/"
    expect(page.locator("#signin-title")).to_have_text("Sign in")
    # Google's script cannot load here: the page says so instead of hanging.
    expect(page.locator("#gsi-problem")).to_be_visible(timeout=15000)
    expect(page.locator("#domains")).to_contain_text("example.com")
    shot(page, "01-signin-desktop.png")

    page.evaluate("c => window.aiproxyCredential({credential: c})", google.id_token(STUDENT))
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#who")).to_have_text(STUDENT)
    token = page.locator("#token").inner_text()
    assert jwt.decode(token, TOKEN_SECRET, algorithms=["HS256"])["email"] == STUDENT
    expect(page.locator("#base-url")).to_have_text(gw.base + "/openai/v1")
    expect(page.locator("#nav-admin")).to_be_hidden()

    page.click("#copy-token")
    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token

    # The Python snippet, run as shown, works against the gateway.
    snippet = page.locator("#snippet-python").inner_text()
    assert token in snippet
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "This is a fake reply."
    # The curl one too.
    curl = page.locator("#snippet-curl").inner_text()
    run = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert "This is a fake reply." in run.stdout

    page.reload()
    me = httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + token}).json()
    month = [m for m in me["months"] if m["month"] == MONTH][0]
    assert month["monthlyRequests"] == 2 and month["monthlyCost"] != "0"
    expect(page.locator("#requests")).to_have_text("2")
    expect(page.locator("#spent")).to_have_text("$" + month["monthlyCost"])
    expect(page.locator("#cap")).to_have_text("$2")
    # Shown to six decimals; the exact amount in the tooltip.
    expect(page.locator("#remaining")).to_have_attribute("title", "$" + me["remaining"])
    assert page.locator("#remaining").inner_text() == "$1.999993"
    assert page.locator("#meter").get_attribute("aria-valuenow") == "0"
    shot(page, "02-student-desktop.png")

    # A student is not let into the admin page.
    page.goto("/admin/admin.html")
    expect(page.locator("#denied-text")).to_contain_text("not an administrator")
    expect(page.locator("#admin")).to_be_hidden()


def test_sign_in_refusals_are_shown(desktop, google):
    page = desktop.page
    desktop.sign_in(google.id_token("mallory@other.org"))
    expect(page.locator("#signin-error")).to_contain_text("other.org may not sign in here")
    expect(page.locator("#signed-in")).to_be_hidden()
    desktop.sign_in(google.id_token(STUDENT, exp=1000, iat=900))
    expect(page.locator("#signin-error")).to_contain_text("expired")


def test_sign_out(desktop, google):
    page = desktop.page
    desktop.sign_in(google.id_token("leaver@example.com"))
    expect(page.locator("#signed-in")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#signin-title")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def usage_emails(page):
    return page.locator("#usage-rows tr td:first-child button.email").all_inner_texts()


def test_admin_view(desktop, gw, google, up):
    page = desktop.page
    # The student has used the gateway (12 seeded users + the student).
    student_token = httpx.get(gw.url("/token"), params={"credential": google.id_token(STUDENT)}).json()["token"]
    openai.OpenAI(base_url=gw.openai_base, api_key=student_token).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    desktop.sign_in(google.id_token(ADMIN))
    expect(page.locator("#nav-admin")).to_be_visible()
    page.click("#nav-admin")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#f-month")).to_have_value(MONTH)

    # Sorted by spend, highest first.
    by_cost = sorted(SEEDED, key=lambda s: (-s[1], s[0]))
    assert usage_emails(page)[:3] == [s[0] for s in by_cost[:3]]
    expect(page.locator("#usage th[data-sort=monthlyCost]")).to_have_attribute("aria-sort", "descending")

    # Sorting by requests.
    page.click("#usage th[data-sort=monthlyRequests] button")
    by_requests = sorted(SEEDED, key=lambda s: (-s[2], s[0]))
    expect(page.locator("#usage-rows tr").first).to_contain_text(by_requests[0][0])
    assert usage_emails(page)[:3] == [s[0] for s in by_requests[:3]]
    expect(page.locator("#usage th[data-sort=monthlyRequests]")).to_have_attribute("aria-sort", "descending")

    # Paging, 10 rows a page: 13 users (the admin has no usage).
    page.select_option("#f-limit", "10")
    page.click("#filters button[type=submit]")
    expect(page.locator("#page-info")).to_have_text("Rows 1–10")
    expect(page.locator("#prev")).to_be_disabled()
    first_page = usage_emails(page)
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("Rows 11–13")
    expect(page.locator("#next")).to_be_disabled()
    assert set(usage_emails(page)).isdisjoint(first_page)
    page.click("#prev")
    expect(page.locator("#page-info")).to_have_text("Rows 1–10")

    # The chart: one bar per day with requests, this month.
    bars = page.locator("#chart svg rect.bar")
    expect(bars).to_have_count(TODAY)
    assert page.locator("#chart svg").get_attribute("role") == "img"
    expect(page.locator("#daily-rows tr")).to_have_count(TODAY)
    shot(page, "03-admin-desktop.png")

    # Email filter (clicking an email sets it), with the chart following.
    target = SEEDED[0][0]
    page.locator("#usage-rows button.email", has_text=target).click()
    expect(page.locator("#usage-rows tr")).to_have_count(1)
    expect(page.locator("#f-email")).to_have_value(target)
    expect(page.locator("#chart svg title").first).to_contain_text(target)

    # Month filter: a month without usage.
    page.fill("#f-email", "")
    page.fill("#f-month", "2001-01")
    page.click("#filters button[type=submit]")
    expect(page.locator("#usage-empty")).to_be_visible()
    expect(bars).to_have_count(0)
    expect(page.locator("#chart-caption")).to_contain_text("No requests in 2001-01")

    # Back to this month; edit a user's cap in the table.
    page.fill("#f-month", MONTH)
    page.click("#filters button[type=submit]")
    row = page.locator("#usage-rows tr", has_text=target)
    row.locator("button", has_text="Edit cap").click()
    cap_input = row.locator("input")
    expect(cap_input).to_be_focused()
    cap_input.fill("0.75")
    row.locator("button", has_text="Save").click()
    expect(page.locator("#status")).to_have_text("Cap of %s set to $0.75." % target)
    assert gw.db().users.find_one({"_id": target})["cap"] == Int64(75 * PICO // 100)
    expect(page.locator("#usage-rows tr", has_text=target).locator("td[data-label=Cap]")).to_have_text("$0.75")
    expect(page.locator("#caps-rows tr", has_text=target)).to_contain_text("$0.75")

    # A domain cap from the form shows on other users of the domain.
    page.fill("#cap-who", "@example.com")
    page.fill("#cap-usd", "1.5")
    page.click("#cap-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("Cap of @example.com set to $1.5.")
    other = page.locator("#usage-rows tr", has_text=SEEDED[1][0]).locator("td[data-label=Cap]")
    expect(other).to_contain_text("$1.5")
    expect(other).to_contain_text("@example.com")

    # Clearing it from the caps list.
    page.get_by_role("button", name="Clear the cap of @example.com", exact=True).click()
    expect(page.locator("#status")).to_have_text("Cap of @example.com cleared.")
    expect(other).to_contain_text("default")

    # Revoke a user from the table: the student's token stops working.
    assert httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + student_token}).status_code == 200
    page.locator("#usage-rows button.email", has_text=STUDENT).click()
    page.locator("#usage-rows tr", has_text=STUDENT).locator("button", has_text="Revoke").click()
    expect(page.locator("#status")).to_contain_text("Tokens of %s issued until" % STUDENT)
    expect(page.locator("#usage-rows tr", has_text=STUDENT)).to_contain_text("revoked")
    r = httpx.get(gw.url("/usage/me"), headers={"Authorization": "Bearer " + student_token})
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"

    # Revoke from the form.
    page.fill("#revoke-email", "user05@example.com")
    page.click("#revoke-form button[type=submit]")
    expect(page.locator("#caps-rows tr", has_text="user05@example.com")).to_be_visible()
    assert gw.db().users.find_one({"_id": "user05@example.com"})["revoked_at"] > 0

    # An API error is shown, not swallowed.
    page.fill("#cap-who", "nobody")
    page.fill("#cap-usd", "1")
    page.click("#cap-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("who must be an email or @domain")


def test_phone_views(phone, gw, google):
    page = phone.page
    page.goto("/")
    expect(page.locator("#gsi-problem")).to_be_visible(timeout=15000)
    shot(page, "04-signin-phone.png")
    phone.sign_in(google.id_token("phone.user@example.com"))
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#spent")).to_have_text("$0")
    # Nothing wider than the screen but the scrolling code blocks.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "05-student-phone.png")

    page.evaluate("sessionStorage.clear()")
    phone.sign_in(google.id_token(ADMIN))
    expect(page.locator("#nav-admin")).to_be_visible()
    page.goto("/admin/admin.html")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The header's sort buttons are hidden on a phone: the filter form sorts.
    page.select_option("#f-sort", "monthlyRequests")
    page.click("#filters button[type=submit]")
    top = sorted(SEEDED, key=lambda s: (-s[2], s[0]))[0][0]
    expect(page.locator("#usage-rows tr").first).to_contain_text(top)
    # Table rows are cards with labels on a phone.
    cell = page.locator("#usage-rows tr").first.locator("td[data-label=Spent]")
    assert page.evaluate("e => getComputedStyle(e, '::before').content", cell.element_handle()) == '"Spent"'
    # Touch targets are at least 36 px high.
    heights = page.evaluate("[...document.querySelectorAll('main button')]"
                            ".filter(b => b.offsetParent && !b.closest('thead'))"
                            ".map(b => b.getBoundingClientRect().height)")
    assert min(heights) >= 36
    shot(page, "06-admin-phone.png")


def test_accessibility_basics(desktop, google):
    page = desktop.page
    for path in ("/admin/", "/admin/admin.html"):
        page.goto(path)
        unlabeled = page.evaluate("""[...document.querySelectorAll('input, select')].filter(e =>
            !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
        assert unlabeled == [], (path, unlabeled)
        nameless = page.evaluate("""[...document.querySelectorAll('button, a')].filter(e =>
            !(e.innerText || '').trim() && !e.getAttribute('aria-label')).map(e => e.outerHTML)""")
        assert nameless == [], (path, nameless)
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator("main").count() == 1
        assert page.locator("h1").count() >= 1
