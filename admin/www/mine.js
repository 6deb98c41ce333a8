/* The signed-in user's own views on the sign-in page: their courses with a
 * token per course, this month's requests (paged) and per-model totals,
 * and a CSV export. A course token comes from /token with Google's
 * credential, which is kept in this page's memory only: after a reload
 * the user signs in again, choosing the course first. */
(function () {
  "use strict";
  var A = window.AIProxy, $ = A.$, el = A.el;
  var PENDING = "aiproxy.pending-course";
  var PAGE = 20;

  var st = { credential: null, oidc: null, skip: 0, wired: false, me: null };

  function credential(c) {
    st.credential = c;
  }

  /* The organisation's sign-in location: a course token comes from there
   * while the provider's session lasts. */
  function oidc(path) {
    st.oidc = path;
  }

  function showCourseToken(r) {
    $("#course-token-title").textContent = "Token for " + r.course;
    $("#course-token-value").textContent = r.token;
    $("#course-token").hidden = false;
    $("#copy-course-token").focus();
    A.announce("Token for " + r.course + " issued: copy it now, it is shown once.", "ok");
  }

  function courseToken(id) {
    if (!st.credential && st.oidc) {
      return A.api(st.oidc + "?course=" + encodeURIComponent(id), { anonymous: true })
        .then(showCourseToken, function (err) {
          A.announce("Sign in again to get a token for " + id + ": " + err.message, "error");
        });
    }
    if (!st.credential) {
      /* Google's credential is gone (a reload): sign in again for it. */
      sessionStorage.setItem(PENDING, id);
      A.clearSession();
      window.location.reload();
      return Promise.resolve();
    }
    return A.api("/token", { method: "POST", anonymous: true,
                             form: { credential: st.credential, course: id } })
      .then(showCourseToken, function (err) {
        if (err.status === 401) {
          st.credential = null;
          A.announce("Sign in again to get a token for " + id + ": " + err.message, "error");
        } else {
          A.announce(err.message, "error");
        }
      });
  }

  function renderCourses(me) {
    var courses = me.courses || [];
    var s = A.session();
    $("#my-courses").hidden = courses.length === 0;
    $("#token-course").textContent = s && s.course
      ? "The token above is for course " + s.course + "."
      : "The token above names no course: its requests are charged to you alone.";
    var ul = $("#course-list");
    ul.textContent = "";
    courses.forEach(function (c) {
      ul.appendChild(el("li", {}, [
        el("span", { class: "course-name", text: c.id + (c.name ? " · " + c.name : "") }),
        c.teaches ? el("span", { class: "tag", text: "you teach it" }) : null,
        el("button", { type: "button", class: "secondary small-btn", text: "Get a token",
                       "aria-label": "Get a token for " + c.id,
                       onclick: function () { courseToken(c.id); } })
      ]));
    });
  }

  function loadRequests() {
    var q = A.query({ skip: st.skip, limit: PAGE, month: A.monthNow() });
    return A.api("/admin/api/requests?" + q).then(function (r) {
      var rows = r.data || [];
      A.renderRequests($("#my-requests-rows"), rows);
      $("#my-requests-empty").hidden = rows.length > 0 || st.skip > 0;
      $("#my-requests").hidden = rows.length === 0;
      $("#my-prev").disabled = st.skip === 0;
      $("#my-next").disabled = rows.length < PAGE;
    }, function (err) {
      $("#my-requests").hidden = true;
      $("#my-requests-empty").textContent = "Requests unavailable: " + err.message;
      $("#my-requests-empty").hidden = false;
    });
  }

  function loadModels() {
    return A.api("/admin/api/models?" + A.query({ month: A.monthNow() })).then(function (r) {
      var rows = r.data || [];
      A.renderModels($("#my-models-rows"), rows);
      $("#my-models-empty").hidden = rows.length > 0;
      $("#my-models").hidden = rows.length === 0;
    }, function (err) {
      $("#my-models").hidden = true;
      $("#my-models-empty").textContent = "Per-model totals unavailable: " + err.message;
      $("#my-models-empty").hidden = false;
    });
  }

  function wire() {
    if (st.wired) return;
    st.wired = true;
    $("#my-prev").addEventListener("click", function () {
      st.skip = Math.max(0, st.skip - PAGE);
      loadRequests();
    });
    $("#my-next").addEventListener("click", function () {
      st.skip += PAGE;
      loadRequests();
    });
    $("#copy-course-token").addEventListener("click", function (e) {
      A.copyText($("#course-token-value").textContent, e.currentTarget);
    });
    $("#my-export").addEventListener("submit", function (e) {
      e.preventDefault();
      var by = $("#my-export-by").value, month = A.monthNow();
      A.download("/admin/api/export?" + A.query({ by: by, month: month }),
                 "usage-" + month + "-by-" + by + ".csv")
        .then(function () { A.announce("Export downloaded.", "ok"); },
              function (err) { A.announce("Export failed: " + err.message, "error"); });
    });
  }

  /* Called by signin.js with `me` once signed in. */
  function render(me) {
    st.me = me;
    wire();
    renderCourses(me);
    var pending = sessionStorage.getItem(PENDING);
    if (pending && st.credential) {
      sessionStorage.removeItem(PENDING);
      courseToken(pending);
    }
    return Promise.all([loadRequests(), loadModels()]).then(function () {
      document.body.setAttribute("data-mine-loaded", "true");
    });
  }

  window.AIProxyMine = { render: render, credential: credential, oidc: oidc };
})();
