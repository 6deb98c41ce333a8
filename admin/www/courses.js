/* The course views of the admin page, for instructors (their courses) and
 * admins (every course, plus create, edit, delete): the course's month
 * against its budget, members with their caps and actions (member cap,
 * reset, revoke, a token shown once), roster import, a member's requests
 * and per-model totals, the course's CSV export and audit log. */
(function () {
  "use strict";
  var A = window.AIProxy, $ = A.$, el = A.el;
  var NEAR = 80;

  var st = { me: null, fail: null, courses: [], course: null, month: A.monthNow(),
             skip: 0, limit: 25, drill: null, dskip: 0, dlimit: 20, shown: 0 };

  function isAdmin() { return st.me && st.me.role === "admin"; }

  function list(text) {
    return text.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
  }

  /* Tells the rest of the page (the site's audit log) that something changed. */
  function changed() {
    document.dispatchEvent(new CustomEvent("aiproxy:changed"));
  }

  function current() {
    return st.courses.filter(function (c) { return c.id === st.course; })[0] || null;
  }

  /* ---- the course list and picker --------------------------------------- */

  function loadCourses(keep) {
    return A.api("/admin/api/courses").then(function (r) {
      st.courses = r.data || [];
      var pick = $("#course-pick");
      pick.textContent = "";
      st.courses.forEach(function (c) {
        pick.appendChild(el("option", { value: c.id, text: c.name ? c.id + " · " + c.name : c.id }));
      });
      if (!keep || !current()) st.course = st.courses.length ? st.courses[0].id : null;
      pick.value = st.course || "";
      $("#no-courses").hidden = st.courses.length > 0;
      $("#course-pick-form").hidden = st.courses.length === 0;
      $("#course-body").hidden = !st.course;
      fillForm(current());
      return st.course ? showCourse() : null;
    }, st.fail);
  }

  function showCourse() {
    var c = current();
    if (!c) return null;
    var m = c.month || { spent: "0", reserved: "0", requests: 0 };
    $("#c-spent").textContent = A.usd(m.spent);
    $("#c-budget").textContent = A.usd(c.budget);
    $("#c-remaining").textContent = A.usd(A.minus(c.budget, m.spent));
    $("#c-members").textContent = String(c.members === undefined ? "—" : c.members);
    var p = Math.min(100, A.pct(m.spent, c.budget));
    var meter = $("#c-meter");
    meter.setAttribute("aria-valuenow", String(p));
    meter.setAttribute("aria-valuetext", p + "% of the course budget used");
    meter.classList.toggle("high", p >= NEAR);
    meter.firstElementChild.style.width = p + "%";
    $("#c-note").textContent = A.usd(m.spent) + " of " + A.usd(c.budget) + " (" + p + "%) spent in " +
      A.monthNow() + ", " + (m.requests || 0) + " request(s). Members' figures are this month's; " +
      "the month above chooses a member's requests and the export.";
    closeDrill();
    return Promise.all([loadMembers(), loadAudit()]).then(function () {
      /* For tests: which course is shown, and how many times it was. */
      document.body.setAttribute("data-course", c.id);
      st.shown += 1;
      document.body.setAttribute("data-shown", String(st.shown));
    });
  }

  /* ---- members ------------------------------------------------------------ */

  function loadMembers() {
    var q = A.query({ course: st.course, skip: st.skip, limit: st.limit });
    return A.api("/admin/api/members?" + q).then(renderMembers, st.fail);
  }

  function memberAction(path, body, done) {
    return A.api("/admin/api/" + path, { method: "POST", json: body }).then(function (r) {
      A.announce(done(r), "ok");
      changed();
      return loadCourses(true);
    }, st.fail);
  }

  function setMemberCap(who, usd) {
    var cap = {};
    cap[who] = usd;
    return memberAction("members", { course: st.course, cap: cap }, function () {
      return usd === null ? "Cap of " + who + " in " + st.course + " cleared."
                          : "Cap of " + who + " in " + st.course + " set to " + A.usd(usd) + ".";
    });
  }

  function capEditor(cell, m) {
    var input = el("input", { inputmode: "decimal", autocomplete: "off", size: "8",
                              "aria-label": "Cap of " + m.who + " in the course, USD",
                              pattern: "[0-9]+(\\.[0-9]+)?", placeholder: "5.00" });
    input.value = m.cap === null || m.cap === undefined ? "" : m.cap;
    var form = el("form", { class: "inline-edit" }, [
      input,
      el("button", { type: "submit", text: "Save" }),
      el("button", { type: "button", class: "secondary", text: "Clear",
                     onclick: function () { setMemberCap(m.who, null); } }),
      el("button", { type: "button", class: "secondary", text: "Cancel",
                     onclick: function () { loadMembers(); } })
    ]);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.value.trim()) {
        A.announce("Enter an amount in USD, or Clear to use the course's member cap.", "error");
        input.focus();
        return;
      }
      setMemberCap(m.who, input.value.trim());
    });
    cell.textContent = "";
    cell.appendChild(form);
    input.focus();
  }

  function reset(email) {
    if (!window.confirm("Set the month of " + email + " back to $0?")) return Promise.resolve();
    return memberAction("reset", { email: email, course: st.course }, function (r) {
      return "Month " + r.month + " of " + r.email + " reset: " + A.usd(r.before.spent) +
             " → " + A.usd(r.after.spent) + ".";
    });
  }

  function revoke(email) {
    if (!window.confirm("Revoke every token of " + email + "? They must sign in again.")) {
      return Promise.resolve();
    }
    return memberAction("revoke", { email: email }, function (r) {
      return "Tokens of " + r.email + " issued until " + A.when(r.revoked_at) + " UTC are revoked.";
    });
  }

  function remove(who) {
    if (!window.confirm("Remove " + who + " from " + st.course + "?")) return Promise.resolve();
    return memberAction("members", { course: st.course, remove: [who] }, function () {
      return who + " removed from " + st.course + ".";
    });
  }

  /* The token is shown here once and kept nowhere else. */
  function issue(email) {
    return A.api("/admin/api/tokens", { method: "POST", json: { email: email, course: st.course } })
      .then(function (r) {
        $("#issued-title").textContent = "New token for " + r.email + " in " + r.course;
        $("#issued-token").textContent = r.token;
        $("#issued").hidden = false;
        $("#issued-copy").focus();
        changed();
        A.announce("Token issued for " + r.email + (r.exp ? ", valid until " + A.when(r.exp) + " UTC." : "."), "ok");
      }, st.fail);
  }

  function hideIssued() {
    $("#issued-token").textContent = "";
    $("#issued").hidden = true;
  }

  function renderMembers(r) {
    var body = $("#members-rows");
    body.textContent = "";
    (r.data || []).forEach(function (m) {
      var person = m.who.charAt(0) !== "@";
      /* Tokens, resets and revocations act on a person, beyond the course:
       * administrators only (the API refuses instructors). */
      var acts = person && isAdmin();
      var p = A.pct(m.spent, m.effective_cap);
      var capCell = el("td", { class: "num", "data-label": "Cap here",
                               text: m.cap === null || m.cap === undefined ? "—" : A.usd(m.cap) });
      var near = p >= NEAR;
      var tr = el("tr", { class: near ? "near" : null, "data-who": m.who }, [
        el("td", { "data-label": "Member" }, [
          person ? el("button", { type: "button", class: "link email", text: m.who,
                                  title: "Requests of " + m.who,
                                  onclick: function () { openDrill(m.who); } })
                 : el("span", { class: "email", text: m.who }),
          near ? el("span", { class: "tag warn", text: p >= 100 ? "at cap" : "near cap" }) : null
        ]),
        el("td", { class: "num", "data-label": "Spent", title: "$" + m.spent, text: A.usd(m.spent) }),
        el("td", { class: "num", "data-label": "Requests", text: String(m.requests || 0) }),
        capCell,
        el("td", { class: "num", "data-label": "Effective cap", text: A.usd(m.effective_cap) }),
        el("td", { class: "num", "data-label": "Used", text: p + "%" }),
        el("td", { class: "row-actions wrap" }, [el("div", { class: "btns" }, [
          el("button", { type: "button", class: "secondary small-btn", text: "Set cap",
                         "aria-label": "Set the cap of " + m.who,
                         onclick: function () { capEditor(capCell, m); } }),
          acts ? el("button", { type: "button", class: "secondary small-btn", text: "Reset month",
                                  "aria-label": "Reset the month of " + m.who,
                                  onclick: function () { reset(m.who); } }) : null,
          acts ? el("button", { type: "button", class: "secondary small-btn", text: "Issue token",
                                  "aria-label": "Issue a token for " + m.who,
                                  onclick: function () { issue(m.who); } }) : null,
          acts ? el("button", { type: "button", class: "danger small-btn", text: "Revoke",
                                  "aria-label": "Revoke the tokens of " + m.who,
                                  onclick: function () { revoke(m.who); } }) : null,
          el("button", { type: "button", class: "danger small-btn", text: "Remove",
                         "aria-label": "Remove " + m.who + " from the course",
                         onclick: function () { remove(m.who); } })
        ])])
      ]);
      body.appendChild(tr);
    });
    var n = (r.data || []).length, total = r.total === undefined ? null : r.total;
    $("#members-empty").hidden = n > 0;
    $("#members").hidden = n === 0;
    $("#m-prev").disabled = st.skip === 0;
    $("#m-next").disabled = total !== null ? st.skip + n >= total : n < st.limit;
    $("#m-info").textContent = n ? "Members " + (st.skip + 1) + "–" + (st.skip + n) +
                                   (total !== null ? " of " + total : "") : "";
  }

  /* ---- one member's requests and models ------------------------------------ */

  function openDrill(email) {
    st.drill = email;
    st.dskip = 0;
    $("#drill").hidden = false;
    $("#drill-title").textContent = email + " in " + st.course + ", " + st.month;
    return loadDrill().then(function () {
      /* Keyboard and screen-reader users land on what they opened. */
      $("#drill-title").focus();
    });
  }

  function closeDrill() {
    st.drill = null;
    $("#drill").hidden = true;
  }

  function loadDrill() {
    var base = { email: st.drill, course: st.course, month: st.month };
    var rq = A.query(Object.assign({ skip: st.dskip, limit: st.dlimit }, base));
    return Promise.all([A.api("/admin/api/requests?" + rq),
                        A.api("/admin/api/models?" + A.query(base))])
      .then(function (r) {
        A.renderRequests($("#drill-requests-rows"), r[0].data || []);
        A.renderModels($("#drill-models-rows"), r[1].data || []);
        var n = (r[0].data || []).length;
        $("#drill-empty").textContent = "No requests in " + st.month + ".";
        $("#drill-empty").hidden = n > 0 || st.dskip > 0;
        $("#d-prev").disabled = st.dskip === 0;
        $("#d-next").disabled = n < st.dlimit;
      }, function (err) {
        if (err.status === 401) return st.fail(err);
        $("#drill-empty").textContent = "Unavailable: " + err.message;
        $("#drill-empty").hidden = false;
      });
  }

  /* ---- roster, export, audit ------------------------------------------------ */

  function importRoster(text) {
    return A.api("/admin/api/roster?" + A.query({ course: st.course }),
                 { method: "POST", json: { csv: text } })
      .then(function (r) {
        var added = r.added || [], already = r.already || [], invalid = r.invalid || [];
        $("#roster-counts").textContent = "Added " + added.length + ", already members " +
          already.length + ", invalid " + invalid.length + "." +
          (added.length ? " New: " + added.join(", ") + "." : "");
        var ul = $("#roster-invalid");
        ul.textContent = "";
        invalid.forEach(function (x) {
          ul.appendChild(el("li", { text: "Line " + x.line + ": " + x.value + " (" + x.reason + ")" }));
        });
        $("#roster-report").hidden = false;
        A.announce("Roster imported into " + st.course + ".", "ok");
        changed();
        return loadCourses(true);
      }, st.fail);
  }

  function loadAudit() {
    return A.api("/admin/api/audit?" + A.query({ course: st.course, limit: 50 })).then(function (r) {
      A.auditRows($("#c-audit-rows"), r.data || [], false);
      $("#c-audit-empty").hidden = (r.data || []).length > 0;
      $("#c-audit").hidden = (r.data || []).length === 0;
    }, st.fail);
  }

  /* ---- admins: create, edit, delete ------------------------------------------ */

  function fillForm(c) {
    $("#cf-id").value = c ? c.id : "";
    $("#cf-name").value = c ? c.name || "" : "";
    $("#cf-budget").value = c ? c.budget : "";
    $("#cf-member-cap").value = c && c.member_cap ? c.member_cap : "";
    $("#cf-instructors").value = c ? (c.instructors || []).join(", ") : "";
    $("#cf-models").value = c ? (c.models || []).join(", ") : "";
    $("#cf-endpoints").value = c ? (c.endpoints || []).join(", ") : "";
    $("#cf-alerts").value = c && c.alerts ? c.alerts.join(", ") : "";
    $("#cf-delete").disabled = !c;
  }

  function saveCourse() {
    var body = { id: $("#cf-id").value.trim(), name: $("#cf-name").value.trim(),
                 budget: $("#cf-budget").value.trim(),
                 instructors: list($("#cf-instructors").value),
                 models: list($("#cf-models").value), endpoints: list($("#cf-endpoints").value) };
    if ($("#cf-member-cap").value.trim()) body.member_cap = $("#cf-member-cap").value.trim();
    if ($("#cf-alerts").value.trim()) body.alerts = list($("#cf-alerts").value).map(Number);
    return A.api("/admin/api/courses", { method: "POST", json: body }).then(function (r) {
      A.announce("Course " + r.id + " saved.", "ok");
      changed();
      st.course = r.id;
      return loadCourses(true);
    }, st.fail);
  }

  function deleteCourse() {
    var id = $("#cf-id").value.trim();
    if (!id || !window.confirm("Delete course " + id + " and its enrolments? Its months stay.")) {
      return Promise.resolve();
    }
    return A.api("/admin/api/courses?" + A.query({ id: id }), { method: "DELETE" }).then(function () {
      A.announce("Course " + id + " deleted.", "ok");
      changed();
      return loadCourses(false);
    }, st.fail);
  }

  /* ---- wiring --------------------------------------------------------------- */

  function wire() {
    $("#course-month").value = st.month;
    $("#course-pick-form").addEventListener("submit", function (e) {
      e.preventDefault();
      st.course = $("#course-pick").value;
      st.month = $("#course-month").value || A.monthNow();
      st.skip = 0;
      hideIssued();
      fillForm(current());
      showCourse();
    });
    $("#course-pick").addEventListener("change", function () {
      st.course = $("#course-pick").value;
      st.skip = 0;
      hideIssued();
      fillForm(current());
      showCourse();
    });
    $("#m-prev").addEventListener("click", function () {
      st.skip = Math.max(0, st.skip - st.limit);
      loadMembers();
    });
    $("#m-next").addEventListener("click", function () {
      st.skip += st.limit;
      loadMembers();
    });
    $("#d-prev").addEventListener("click", function () {
      st.dskip = Math.max(0, st.dskip - st.dlimit);
      loadDrill();
    });
    $("#d-next").addEventListener("click", function () {
      st.dskip += st.dlimit;
      loadDrill();
    });
    $("#drill-close").addEventListener("click", closeDrill);
    $("#issued-copy").addEventListener("click", function (e) {
      A.copyText($("#issued-token").textContent, e.currentTarget);
    });
    $("#issued-hide").addEventListener("click", hideIssued);
    $("#roster-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var file = $("#roster-file").files[0], text = $("#roster-text").value;
      if (file) {
        file.text().then(importRoster);
      } else if (text.trim()) {
        importRoster(text);
      } else {
        A.announce("Choose a CSV file or paste the roster.", "error");
        $("#roster-text").focus();
      }
    });
    $("#export-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var by = $("#export-by").value;
      A.download("/admin/api/export?" + A.query({ by: by, month: st.month, course: st.course }),
                 st.course + "-" + st.month + "-by-" + by + ".csv")
        .then(function () { A.announce("Export downloaded.", "ok"); }, st.fail);
    });
    $("#course-form").addEventListener("submit", function (e) {
      e.preventDefault();
      saveCourse();
    });
    $("#cf-new").addEventListener("click", function () {
      fillForm(null);
      $("#cf-id").focus();
    });
    $("#cf-delete").addEventListener("click", deleteCourse);
  }

  /* Called by admin.js once `me` says the caller is an admin or an
   * instructor; fail handles API errors. */
  function start(me, fail) {
    st.me = me;
    st.fail = fail;
    wire();
    $("#courses-view").hidden = false;
    $("#course-edit").hidden = !isAdmin();
    $("#courses-h1").textContent = isAdmin() ? "Courses" : "Your courses";
    return loadCourses(false).then(function () {
      document.body.setAttribute("data-courses-loaded", "true");
    });
  }

  window.AIProxyCourses = { start: start };
})();
