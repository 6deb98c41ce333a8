"""The dashboard for each role (issue 15) in headless Chromium, against the
real admin API: an instructor sees their course only (no site-wide views,
no course form), imports a roster, sets a member's cap, resets a month,
issues a token shown once, drills into a member and reads the course's
audit log; an admin also creates, edits and deletes courses and sees the
site's audit log and who is near the cap; a student sees their own month,
courses and a token per course, and no members. Every view fits a 375 px
phone, no script or console error occurs, and no token is on a page but
the one just issued. Screenshots go to var/test-artifacts/dashboard/."""
import datetime
import re
import secrets

import httpx
import jwt
import openai
import pytest
from bson import Int64

from conftest import ADMIN, TOKEN_SECRET, Gateway, make_token
from google_fake import GoogleFake
from test_dashboard import CHROMIUM, CHROMIUM_ARGS, DESKTOP, shot

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

PHONE = {"viewport": {"width": 375, "height": 740}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
MONTH = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
PICO = 10 ** 12
TAG = secrets.token_hex(2)
CA = "dash-a" + TAG                  # taught by INST
CB = "dash-b" + TAG                  # taught by INST2
INST = "prof-%s@example.com" % TAG
INST2 = "other-prof-%s@example.com" % TAG
STU = "stu-%s@example.com" % TAG     # in CA and CB; spends in CA
STU2 = "near-%s@example.com" % TAG   # in CA, at 90% of the member cap
NEW = "new-%s@example.com" % TAG     # added by the roster
HIGH = "high-%s@example.com" % TAG   # in no course, at 85% of the site's $2 cap
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def admin_call(gw, method, path, body=None, **kw):
    r = httpx.request(method, gw.url(path), json=body, timeout=30,
                      headers={"Authorization": "Bearer " + make_token(ADMIN)}, **kw)
    assert r.status_code in (200, 201), r.text
    return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def members(gw, course):
    return {m["who"]: m for m in admin_call(gw, "GET", "/admin/api/members",
                                            params={"course": course})["data"]}


@pytest.fixture(scope="module")
def google():
    g = GoogleFake().start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def gw(store, upstream, google):
    g = Gateway(store, upstream, extra_conf=google.gateway_conf(), loglevel="info").start()
    admin_call(g, "POST", "/admin/api/courses", {"id": CA, "name": "Course A", "budget": "10",
                                                 "member_cap": "2", "instructors": [INST]})
    admin_call(g, "POST", "/admin/api/courses", {"id": CB, "name": "Course B", "budget": "5",
                                                 "instructors": [INST2]})
    admin_call(g, "POST", "/admin/api/members", {"course": CA, "add": [STU, STU2]})
    admin_call(g, "POST", "/admin/api/members", {"course": CB, "add": [STU]})
    # STU spends in CA through the real request path; STU2 is near the cap.
    openai.OpenAI(base_url=g.openai_base, api_key=make_token(STU, course=CA)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    spent = 18 * PICO // 10
    g.db().months.insert_one({"_id": "%s|%s" % (STU2, MONTH), "email": STU2, "month": MONTH,
                              "spent": Int64(spent), "reserved": Int64(0), "load": Int64(spent),
                              "requests": Int64(3), "holds": {}})
    spent = 17 * PICO // 10
    g.db().months.insert_one({"_id": "%s|%s" % (HIGH, MONTH), "email": HIGH, "month": MONTH,
                              "spent": Int64(spent), "reserved": Int64(0), "load": Int64(spent),
                              "requests": Int64(1), "holds": {}})
    g.wait_records()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


class Tab:
    """A tab on the gateway signed in as someone (the session a sign-in
    leaves in sessionStorage), collecting script and console errors."""

    def __init__(self, browser, gw, device):
        self.gw = gw
        self.ctx = browser.new_context(base_url=gw.base, accept_downloads=True, **device)
        self.ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.base)
        self.ctx.route("https://accounts.google.com/**", lambda route: route.abort())
        self.page = self.ctx.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self.console)
        self.page.on("dialog", lambda d: d.accept())
        self.failed = []
        self.expected = []   # (method, path) refusals a test asks for
        self.aborted = []    # loads that never got an answer
        self.closing = False   # loads cut by closing the tab are no fault
        self.page.on("requestfailed",
                     lambda r: None if self.closing else self.aborted.append(r.url))
        self.page.on("response", lambda r: self.failed.append((r.request.method, r.url))
                     if r.status >= 400 else None)

    def console(self, msg):
        if msg.type == "error":
            self.errors.append(msg.text)

    def session(self, email, token=None):
        # The admin page without a session loads nothing more.
        self.page.goto("/admin/admin.html")
        expect(self.page.locator("#denied")).to_be_visible()
        self.page.evaluate("s => sessionStorage.setItem('aiproxy.session', JSON.stringify(s))",
                           {"token": token or make_token(email), "email": email})
        return self

    def text_tokens(self):
        return JWT.findall(self.page.locator("body").inner_text())

    def fits(self):
        sw, iw = self.page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert sw <= iw, (sw, iw)

    def close(self):
        self.closing = True
        self.ctx.close()
        allowed = self.expected
        # Each failed load is logged once on the console: only refusals
        # the test asked for are expected.
        unexpected = [(m, u) for m, u in self.failed
                      if not any(m == am and "/admin/api/" in u and
                                 u.split("?")[0].endswith(ap) for am, ap in allowed)]
        assert unexpected == []
        rest = [e for e in self.errors if "Failed to load resource" not in e]
        assert rest == []
        # Only Google's script, blocked here, is ever left unanswered.
        assert [u for u in self.aborted if not u.startswith("https://accounts.google.com/")] == []
        assert len(self.errors) - len(rest) <= len(self.failed) + len(self.aborted)


@pytest.fixture
def tab(browser, gw):
    tabs = []

    def make(device=DESKTOP):
        t = Tab(browser, gw, device)
        tabs.append(t)
        return t
    yield make
    for t in tabs:
        t.close()


def open_admin(t, email):
    t.session(email)
    t.page.goto("/admin/admin.html")
    expect(t.page.locator("body")).to_have_attribute("data-courses-loaded", "true")
    return t.page


def row(page, who):
    return page.locator("#members-rows tr[data-who='%s']" % who)


def test_instructor_sees_only_their_course(tab, gw):
    t = tab()
    page = open_admin(t, INST)
    expect(page.locator("#courses-h1")).to_have_text("Your courses")
    # No site-wide views, no course form, no other course.
    expect(page.locator("#site")).to_be_hidden()
    expect(page.locator("#usage")).to_be_hidden()
    expect(page.locator("#course-edit")).to_be_hidden()
    assert page.locator("#course-pick option").evaluate_all("o => o.map(x => x.value)") == [CA]
    expect(page.locator("body")).to_have_attribute("data-course", CA)
    expect(page.locator("#c-budget")).to_have_text("$10")
    spent = admin_call(gw, "GET", "/admin/api/courses")["data"]
    spent = [c for c in spent if c["id"] == CA][0]["month"]["spent"]
    assert spent != "0"
    expect(page.locator("#c-spent")).to_have_text(page.evaluate("s => AIProxy.usd(s)", spent))
    expect(page.locator("#c-members")).to_have_text("2")
    # Members with their effective caps; the one at 90% is highlighted.
    expect(page.locator("#members-rows tr")).to_have_count(2)
    expect(row(page, STU2)).to_have_class(re.compile(r"\bnear\b"))
    expect(row(page, STU2).locator("td[data-label=Used]")).to_have_text("90%")
    expect(row(page, STU2)).to_contain_text("near cap")
    expect(row(page, STU)).not_to_have_class(re.compile(r"\bnear\b"))
    expect(row(page, STU).locator("td[data-label='Effective cap']")).to_have_text("$2")
    assert t.text_tokens() == []
    shot(page, "10-instructor-desktop.png")
    # The sign-in page links an instructor to their courses.
    page.goto("/admin/")
    expect(page.locator("#nav-admin")).to_have_text("Courses")
    expect(page.locator("#nav-admin")).to_be_visible()


def test_instructor_actions(tab, gw):
    t = tab()
    page = open_admin(t, INST)

    # Roster paste: the report, then the new member in the table.
    page.fill("#roster-text", "email\n%s\nnot-an-email\n%s\n" % (NEW, STU))
    page.click("#roster-form button[type=submit]")
    expect(page.locator("#roster-counts")).to_contain_text("Added 1, already members 1, invalid 1")
    expect(page.locator("#roster-invalid li")).to_have_text(re.compile(r"Line 3: not-an-email"))
    expect(row(page, NEW)).to_be_visible()
    assert NEW in members(gw, CA)
    expect(page.locator("#c-members")).to_have_text("3")

    # A member's cap in the course, through the table: the API has it.
    row(page, NEW).get_by_role("button", name="Set the cap of " + NEW).click()
    cap_input = row(page, NEW).locator("input")
    expect(cap_input).to_be_focused()
    cap_input.fill("1.25")
    row(page, NEW).get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_have_text("Cap of %s in %s set to $1.25." % (NEW, CA))
    m = members(gw, CA)[NEW]
    assert m["cap"] == "1.25" and m["effective_cap"] == "1.25"
    expect(row(page, NEW).locator("td[data-label='Cap here']")).to_have_text("$1.25")

    # Over the course budget: the API's refusal is shown.
    t.expected.append(("POST", "/admin/api/members"))
    row(page, NEW).get_by_role("button", name="Set the cap of " + NEW).click()
    row(page, NEW).locator("input").fill("50")
    row(page, NEW).locator("input").press("Enter")   # the keyboard submits too
    expect(page.locator("#status")).to_have_class(re.compile("error"))
    assert members(gw, CA)[NEW]["cap"] == "1.25"

    # Tokens, month resets and revocations act on a person beyond the
    # course: an instructor is offered none (the API refuses them too).
    for label in ("Reset the month of ", "Issue a token for ", "Revoke the tokens of "):
        expect(page.get_by_role("button", name=label + STU2)).to_have_count(0)
    r = httpx.post(gw.url("/admin/api/reset"), json={"email": STU2},
                   headers={"Authorization": "Bearer " + make_token(INST)}, timeout=30)
    assert r.status_code == 403, r.text
    assert members(gw, CA)[STU2]["spent"] == "1.8"

    # The course audit log has each action, and no token.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-courses-loaded", "true")
    actions = page.locator("#c-audit-rows td[data-label=Action]").all_inner_texts()
    for a in ("roster.import", "member.cap"):
        assert a in actions, (a, actions)
    assert t.text_tokens() == []

    # A member's requests and per-model totals, then the course's CSV.
    row(page, STU).locator("button.email").click()
    expect(page.locator("#drill")).to_be_visible()
    expect(page.locator("#drill-title")).to_contain_text(STU)
    expect(page.locator("#drill-title")).to_be_focused()
    expect(page.locator("#drill-requests-rows tr")).to_have_count(1)
    expect(page.locator("#drill-requests-rows tr td[data-label=Model]")).to_have_text("gpt-4o-mini")
    expect(page.locator("#drill-models-rows tr td[data-label=Model]")).to_have_text("gpt-4o-mini")
    with page.expect_download() as dl:
        page.click("#export-form button[type=submit]")
    assert dl.value.suggested_filename == "%s-%s-by-user.csv" % (CA, MONTH)
    rows = open(dl.value.path()).read().splitlines()
    assert rows[0] == "email,requests,estimated,input_tokens,cached_tokens,cache_write_tokens," \
                      "output_tokens,cost"
    # Only the course's records: STU's one request (STU2's month has none).
    assert len(rows) == 2 and rows[1].startswith(STU + ",1,0,")
    cost = page.locator("#drill-requests-rows tr td[data-label=Cost]").get_attribute("title")
    assert rows[1].endswith("," + cost[1:])


def test_instructor_cannot_reach_another_course(tab, gw):
    # The page only offers the instructor's courses; the API refuses others
    # (what the page would show if asked).
    t = tab()
    page = open_admin(t, INST2)
    assert page.locator("#course-pick option").evaluate_all("o => o.map(x => x.value)") == [CB]
    expect(page.locator("#members-rows tr")).to_have_count(1)
    expect(page.locator("#members-rows")).not_to_contain_text(STU2)
    r = page.evaluate("c => AIProxy.api('/admin/api/members?course=' + c).then(() => 0, e => e.status)",
                      CA)
    assert r == 403
    t.expected.append(("GET", "/admin/api/members"))


def test_admin_courses(tab, gw):
    t = tab()
    page = open_admin(t, ADMIN)
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#site")).to_be_visible()
    expect(page.locator("#course-edit")).to_be_visible()
    ids = page.locator("#course-pick option").evaluate_all("o => o.map(x => x.value)")
    assert CA in ids and CB in ids

    # Create a course from the form.
    new = "dash-n" + TAG
    page.click("#cf-new")
    expect(page.locator("#cf-id")).to_be_focused()
    page.fill("#cf-id", new)
    page.fill("#cf-name", "New one")
    page.fill("#cf-budget", "3")
    page.fill("#cf-member-cap", "1")
    page.fill("#cf-instructors", INST2 + ", " + INST)
    page.fill("#cf-models", "gpt-4o-mini")
    page.fill("#cf-alerts", "50, 100")
    page.click("#course-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("Course %s saved." % new)
    c = [c for c in admin_call(gw, "GET", "/admin/api/courses")["data"] if c["id"] == new][0]
    assert (c["name"], c["budget"], c["member_cap"], c["models"], c["alerts"]) == \
        ("New one", "3", "1", ["gpt-4o-mini"], [50, 100])
    assert sorted(c["instructors"]) == sorted([INST, INST2])
    expect(page.locator("#course-pick")).to_have_value(new)
    expect(page.locator("#members-empty")).to_be_visible()

    # Edit it: the form holds the course; a new name.
    expect(page.locator("#cf-budget")).to_have_value("3")
    page.fill("#cf-name", "Renamed")
    page.click("#course-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("Course %s saved." % new)
    assert [c for c in admin_call(gw, "GET", "/admin/api/courses")["data"]
            if c["id"] == new][0]["name"] == "Renamed"

    # The site's audit log shows both, with their course.
    expect(page.locator("#audit-all-rows tr", has_text="course.create").first).to_contain_text(new)
    expect(page.locator("#audit-all-rows tr", has_text="course.update").first).to_contain_text(new)

    # Delete it.
    page.click("#cf-delete")
    expect(page.locator("#status")).to_have_text("Course %s deleted." % new)
    assert new not in [c["id"] for c in admin_call(gw, "GET", "/admin/api/courses")["data"]]
    assert new not in page.locator("#course-pick option").evaluate_all("o => o.map(x => x.value)")

    # Any course's members, with the same actions as an instructor's; a
    # roster as a file (a BOM, CRLF, a quoted field, a domain).
    page.select_option("#course-pick", CB)
    expect(page.locator("body")).to_have_attribute("data-course", CB)
    expect(row(page, STU)).to_be_visible()
    page.set_input_files("#roster-file", files=[{
        "name": "roster.csv", "mimeType": "text/csv",
        "buffer": ("\ufeffemail,name\r\n%s,\"Stu, again\"\r\n@dept-%s.example.com,x\r\n"
                   % (STU, TAG)).encode()}])
    page.click("#roster-form button[type=submit]")
    expect(page.locator("#roster-counts")).to_contain_text("Added 1, already members 1, invalid 0")
    expect(row(page, "@dept-%s.example.com" % TAG)).to_be_visible()
    assert "@dept-%s.example.com" % TAG in members(gw, CB)
    # At 80% (the default): HIGH at 85%, not STU.
    high = page.locator("#near-rows tr", has_text=HIGH)
    expect(high.locator("td[data-label=Used]")).to_have_text("85%")
    expect(high.locator("td[data-label=Cap]")).to_have_text("$2")
    expect(page.locator("#near-rows")).not_to_contain_text(STU)
    page.fill("#near-threshold", "90")
    page.click("#near-form button[type=submit]")
    expect(high).to_have_count(0)
    assert t.text_tokens() == []
    shot(page, "12-admin-courses-desktop.png")


def test_student_view(tab, gw, google):
    t = tab()
    page = t.page
    page.goto("/admin/")
    expect(page.locator("#signin-title")).to_be_visible()
    page.evaluate("c => window.aiproxyCredential({credential: c})", google.id_token(STU))
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-mine-loaded", "true")
    own = page.locator("#token").inner_text()
    # In two courses: the sign-in token names neither.
    assert "course" not in jwt.decode(own, TOKEN_SECRET, algorithms=["HS256"])
    expect(page.locator("#token-course")).to_contain_text("names no course")
    expect(page.locator("#course-list li")).to_have_count(2)
    expect(page.locator("#course-list")).to_contain_text("Course A")
    expect(page.locator("#nav-admin")).to_be_hidden()
    expect(page.locator("#remaining")).not_to_have_text("—")

    # A token for course B, shown once.
    page.get_by_role("button", name="Get a token for " + CB).click()
    expect(page.locator("#course-token")).to_be_visible()
    course_token = page.locator("#course-token-value").inner_text()
    claims = jwt.decode(course_token, TOKEN_SECRET, algorithms=["HS256"])
    assert claims["email"] == STU and claims["course"] == CB
    # It works on the request path, charged to course B.
    openai.OpenAI(base_url=gw.openai_base, api_key=course_token).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    # The tokens it just got (the sign-in's, also in the snippets), no other.
    assert set(t.text_tokens()) == {own, course_token}

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-mine-loaded", "true")
    assert set(t.text_tokens()) == {own}
    # Own requests (one in each course) and per-model totals.
    expect(page.locator("#my-requests-rows tr")).to_have_count(2)
    expect(page.locator("#my-models-rows tr td[data-label=Requests]")).to_have_text("2")
    with page.expect_download() as dl:
        page.click("#my-export button[type=submit]")
    rows = open(dl.value.path()).read().splitlines()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert rows[0].startswith("day,requests,") and rows[1].startswith(today + ",2,")
    assert len(rows) == 2
    shot(page, "13-student-courses-desktop.png")

    # No members table, no course views for a student.
    assert page.locator("#members").count() == 0
    page.goto("/admin/admin.html")
    expect(page.locator("#denied-text")).to_contain_text("not an administrator or an instructor")
    expect(page.locator("#admin")).to_be_hidden()
    expect(page.locator("#members")).to_be_hidden()


def test_student_course_token_after_reload(tab, gw, google):
    # Google's credential is in memory only: after a reload the student
    # signs in again and gets the course token they asked for.
    t = tab()
    page = t.page
    page.goto("/admin/")
    page.evaluate("c => window.aiproxyCredential({credential: c})", google.id_token(STU))
    expect(page.locator("body")).to_have_attribute("data-mine-loaded", "true")
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-mine-loaded", "true")
    page.get_by_role("button", name="Get a token for " + CA).click()
    expect(page.locator("#signin-title")).to_be_visible()
    page.evaluate("c => window.aiproxyCredential({credential: c})", google.id_token(STU))
    expect(page.locator("#course-token")).to_be_visible()
    claims = jwt.decode(page.locator("#course-token-value").inner_text(), TOKEN_SECRET,
                        algorithms=["HS256"])
    assert claims["course"] == CA


@pytest.mark.parametrize("who", ["student", "instructor", "admin"])
def test_phone_layout(tab, gw, google, who):
    t = tab(PHONE)
    page = t.page
    if who == "student":
        page.goto("/admin/")
        page.evaluate("c => window.aiproxyCredential({credential: c})", google.id_token(STU))
        expect(page.locator("body")).to_have_attribute("data-mine-loaded", "true")
        page.get_by_role("button", name="Get a token for " + CA).click()
        expect(page.locator("#course-token")).to_be_visible()
    else:
        open_admin(t, INST if who == "instructor" else ADMIN)
        if who == "admin":
            expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        page.select_option("#course-pick", CA)
        expect(page.locator("body")).to_have_attribute("data-course", CA)
        if who == "admin":
            row(page, STU).get_by_role("button", name="Issue a token for " + STU).click()
            expect(page.locator("#issued")).to_be_visible()
        row(page, STU).locator("button.email").click()
        expect(page.locator("#drill")).to_be_visible()
        # Table rows are labelled cards; actions wrap within the card.
        # Read from the page as it is then: the table may be drawn anew
        # meanwhile (a handle would name a detached cell).
        expect(row(page, STU).locator("td[data-label=Spent]")).to_be_visible()
        assert page.evaluate("s => getComputedStyle(document.querySelector(s), "
                             "'::before').content",
                             "#members-rows tr[data-who='%s'] td[data-label=Spent]"
                             % STU) == '"Spent"'
    t.fits()
    heights = page.evaluate("[...document.querySelectorAll('main button')]"
                            ".filter(b => b.offsetParent && !b.closest('thead'))"
                            ".map(b => b.getBoundingClientRect().height)")
    assert min(heights) >= 36
    shot(page, "14-%s-phone.png" % who)


def test_labels(tab, gw):
    for email in (INST, ADMIN):
        page = open_admin(tab(), email)
        unlabeled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
            .map(e => e.id)""")
        assert unlabeled == []
        nameless = page.evaluate("""[...document.querySelectorAll('button, a')].filter(e =>
            !(e.textContent || '').trim() && !e.getAttribute('aria-label')).map(e => e.outerHTML)""")
        assert nameless == []


def test_admin_member_actions(tab, gw):
    """An administrator resets a member's month, issues a token shown once
    and revokes, from the course's member table."""
    gone = "gone-%s@example.com" % TAG
    admin_call(gw, "POST", "/admin/api/members", {"course": CA, "add": [gone]})
    t = tab()
    page = open_admin(t, ADMIN)
    page.select_option("#course-pick", CA)
    expect(page.locator("body")).to_have_attribute("data-course", CA)
    expect(row(page, STU2)).to_be_visible()

    # Reset a month: 0 in the store and on the page.
    assert members(gw, CA)[STU2]["spent"] == "1.8"
    row(page, STU2).get_by_role("button", name="Reset the month of " + STU2).click()
    expect(page.locator("#status")).to_contain_text("of %s reset: $1.8 → $0." % STU2)
    assert members(gw, CA)[STU2]["spent"] == "0"
    expect(row(page, STU2).locator("td[data-label=Spent]")).to_have_text("$0")
    expect(row(page, STU2)).not_to_have_class(re.compile(r"\bnear\b"))

    # Issue a token: shown once with a copy button, for this course.
    row(page, STU).get_by_role("button", name="Issue a token for " + STU).click()
    expect(page.locator("#issued")).to_be_visible()
    token = page.locator("#issued-token").inner_text()
    claims = jwt.decode(token, TOKEN_SECRET, algorithms=["HS256"])
    assert claims["email"] == STU and claims["course"] == CA
    assert t.text_tokens() == [token]
    page.click("#issued-copy")
    expect(page.locator("#issued-copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    shot(page, "11-admin-token-desktop.png")
    page.click("#issued-hide")
    expect(page.locator("#issued")).to_be_hidden()
    assert t.text_tokens() == []
    assert token not in page.content()

    # Revoke a member (then the page reloads the course).
    shown = page.locator("body").get_attribute("data-shown")
    row(page, gone).get_by_role("button", name="Revoke the tokens of " + gone).click()
    expect(page.locator("#status")).to_contain_text("Tokens of %s issued until" % gone)
    expect(page.locator("body")).not_to_have_attribute("data-shown", shown)
    assert gw.db().users.find_one({"_id": gone})["revoked_at"] > 0

    # The course audit log has the course's actions, and no token.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-courses-loaded", "true")
    page.select_option("#course-pick", CA)
    expect(page.locator("body")).to_have_attribute("data-course", CA)
    expect(page.locator("#c-audit-rows tr", has_text="token.issue").first).to_be_visible()
    actions = page.locator("#c-audit-rows td[data-label=Action]").all_inner_texts()
    # A revocation is the whole person's, so it is in the site's log only.
    for a in ("month.reset", "token.issue"):
        assert a in actions, (a, actions)
    assert t.text_tokens() == []
