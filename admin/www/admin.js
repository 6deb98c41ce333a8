/* The admin page: usage per user (the /admin/api/usage listing: month and
 * email filters, sorting, paging), per-user cap edit and revocation, caps
 * for emails and @domains, and a chart of cost per day. */
(function () {
  "use strict";
  var A = window.AIProxy, $ = A.$, el = A.el;

  var state = { month: A.monthNow(), email: "", sort: "monthlyCost", skip: 0, limit: 25,
                caps: {}, defaultCap: null };

  function query(params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) {
      if (params[k] !== "" && params[k] !== null && params[k] !== undefined) q.set(k, params[k]);
    });
    return q.toString();
  }

  function fail(err) {
    if (err.status === 401) {
      A.clearSession();
      deny("Your session has ended (" + err.message + ") Sign in again.");
      return;
    }
    A.announce(err.message, "error");
  }

  function deny(text) {
    $("#admin").hidden = true;
    $("#denied").hidden = false;
    $("#denied-text").textContent = text;
  }

  /* The cap that applies to an email, and where it comes from. */
  function capOf(email) {
    var own = state.caps[email], domain = state.caps[email.slice(email.indexOf("@"))];
    if (own && own.cap !== null) return { cap: own.cap, from: "own" };
    if (domain && domain.cap !== null) return { cap: domain.cap, from: email.slice(email.indexOf("@")) };
    return { cap: state.defaultCap, from: "default" };
  }

  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
  }

  /* ---- mutations --------------------------------------------------------- */

  function setCap(who, usd) {
    return A.api("/admin/api/caps", { method: "PUT", json: { who: who, cap: usd } })
      .then(function (r) {
        A.announce(r.cap === null ? "Cap of " + r.who + " cleared."
                                  : "Cap of " + r.who + " set to " + A.usd(r.cap) + ".", "ok");
        return refresh();
      }, fail);
  }

  function revoke(email) {
    if (!window.confirm("Revoke every token of " + email + "? They must sign in again.")) {
      return Promise.resolve();
    }
    return A.api("/admin/api/revoke", { method: "POST", json: { email: email } })
      .then(function (r) {
        A.announce("Tokens of " + r.email + " issued until " + when(r.revoked_at) +
                   " UTC are revoked.", "ok");
        return refresh();
      }, fail);
  }

  /* ---- the usage table --------------------------------------------------- */

  function capEditor(cell, email, current) {
    var input = el("input", { inputmode: "decimal", autocomplete: "off", size: "8",
                              "aria-label": "Monthly cap for " + email + " in USD",
                              pattern: "[0-9]+(\\.[0-9]+)?", placeholder: "2.50" });
    input.value = current.from === "own" ? current.cap : "";
    var form = el("form", { class: "inline-edit" }, [
      input,
      el("button", { type: "submit", text: "Save" }),
      el("button", { type: "button", class: "secondary", text: "Clear",
                     onclick: function () { setCap(email, null); } }),
      el("button", { type: "button", class: "secondary", text: "Cancel",
                     onclick: function () { renderUsage(lastUsage); } })
    ]);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.value.trim()) {
        A.announce("Enter an amount in USD, or Clear to use the " +
                   (current.from === "own" ? "domain or default" : current.from) + " cap.", "error");
        input.focus();
        return;
      }
      setCap(email, input.value.trim());
    });
    cell.textContent = "";
    cell.appendChild(form);
    input.focus();
  }

  var lastUsage = null;

  function renderUsage(usage) {
    lastUsage = usage;
    var body = $("#usage-rows");
    body.textContent = "";
    usage.data.forEach(function (row) {
      var cap = capOf(row.email);
      var user = state.caps[row.email];
      var capCell = el("td", { class: "num", "data-label": "Cap" }, [
        el("span", { text: A.usd(cap.cap), title: "$" + cap.cap }),
        cap.from === "own" ? null : el("span", { class: "tag", text: cap.from })
      ]);
      var tr = el("tr", {}, [
        el("td", { "data-label": "Email" }, [
          el("button", { type: "button", class: "link email", text: row.email,
                         title: "Show only " + row.email,
                         onclick: function () { filterEmail(row.email); } }),
          user && user.revoked_at ? el("span", { class: "tag warn", text: "revoked",
                                                 title: "Revoked " + when(user.revoked_at) + " UTC" }) : null
        ]),
        el("td", { class: "num", "data-label": "Spent", title: "$" + row.monthlyCost,
                   text: A.usd(row.monthlyCost) }),
        el("td", { class: "num", "data-label": "Requests", text: String(row.monthlyRequests) }),
        el("td", { class: "num", "data-label": "Reserved", title: "$" + row.reserved,
                   text: A.usd(row.reserved) }),
        capCell,
        el("td", { class: "row-actions" }, [
          el("button", { type: "button", class: "secondary small-btn", text: "Edit cap",
                         "aria-label": "Edit the cap of " + row.email,
                         onclick: function () { capEditor(capCell, row.email, cap); } }),
          el("button", { type: "button", class: "danger small-btn", text: "Revoke",
                         "aria-label": "Revoke the tokens of " + row.email,
                         onclick: function () { revoke(row.email); } })
        ])
      ]);
      body.appendChild(tr);
    });
    $("#usage-empty").hidden = usage.data.length > 0;
    $("#usage").hidden = usage.data.length === 0;
    $("#prev").disabled = state.skip === 0;
    $("#next").disabled = usage.data.length < state.limit;
    $("#page-info").textContent = usage.data.length
      ? "Rows " + (state.skip + 1) + "–" + (state.skip + usage.data.length)
      : (state.skip ? "No more rows" : "");
    $("#sum-users").textContent = String(usage.data.length);
    document.querySelectorAll("#usage th[data-sort]").forEach(function (th) {
      var active = th.getAttribute("data-sort") === state.sort;
      th.setAttribute("aria-sort", active ? "descending" : "none");
      th.classList.toggle("sorted", active);
    });
  }

  /* ---- caps -------------------------------------------------------------- */

  function renderCaps(caps) {
    state.defaultCap = caps.default_cap;
    state.caps = {};
    caps.data.forEach(function (c) { state.caps[c.who] = c; });
    $("#sum-default").textContent = A.usd(caps.default_cap);
    var body = $("#caps-rows");
    body.textContent = "";
    var shown = caps.data.filter(function (c) { return c.cap !== null || c.revoked_at; });
    shown.forEach(function (c) {
      body.appendChild(el("tr", {}, [
        el("td", { "data-label": "Who", text: c.who }),
        el("td", { class: "num", "data-label": "Cap", text: c.cap === null ? "—" : A.usd(c.cap) }),
        el("td", { "data-label": "Revoked", text: c.revoked_at ? when(c.revoked_at) : "—" }),
        el("td", { class: "row-actions" }, [
          c.cap === null ? null : el("button", {
            type: "button", class: "secondary small-btn", text: "Clear cap",
            "aria-label": "Clear the cap of " + c.who,
            onclick: function () { setCap(c.who, null); } })
        ])
      ]));
    });
    $("#caps-empty").hidden = shown.length > 0;
    $("#caps").hidden = shown.length === 0;
  }

  /* ---- the chart ----------------------------------------------------------- */

  function daysIn(month) {
    var y = Number(month.slice(0, 4)), m = Number(month.slice(5, 7));
    return new Date(Date.UTC(y, m, 0)).getUTCDate();
  }

  /* 1, 2, 5 x 10^k at or above x: axis tops a reader can read. */
  function niceTop(x) {
    if (x <= 0) return 1;
    var k = Math.pow(10, Math.floor(Math.log10(x)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * k >= x) return steps[i] * k;
    return 10 * k;
  }

  function axisLabel(v) {
    if (v === 0) return "$0";
    if (v >= 1) return "$" + Number(v.toPrecision(3)).toLocaleString("en-US");
    return "$" + Number(v.toPrecision(2)).toString();
  }

  function renderChart(daily) {
    var n = daysIn(daily.month), byDay = {};
    daily.days.forEach(function (d) { byDay[Number(d.day.slice(8, 10))] = d; });
    var max = 0;
    daily.days.forEach(function (d) { max = Math.max(max, Number(d.cost)); });
    var top = niceTop(max);
    /* Drawn at the width it is shown at, so labels stay legible on a phone. */
    var W = Math.max(300, Math.min(720, $("#chart").clientWidth || 720));
    var H = W < 500 ? 200 : 240, L = 60, R = 6, T = 12, B = 30;
    var pw = W - L - R, ph = H - T - B, step = pw / n, bw = Math.max(2, step * 0.7);
    var peak = daily.days.slice().sort(function (a, b) { return Number(b.cost) - Number(a.cost); })[0];
    var desc = daily.days.length
      ? "Total " + A.usd(daily.total) + " over " + daily.days.length + " day(s) with requests; highest " +
        A.usd(peak.cost) + " on " + peak.day + "."
      : "No requests in " + daily.month + ".";
    var svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, role: "img",
                              "aria-labelledby": "chart-svg-title chart-svg-desc", class: "bars" }, [
      el("svg:title", { id: "chart-svg-title", text: "Cost per day, " + daily.month +
                        (daily.email ? ", " + daily.email : "") }),
      el("svg:desc", { id: "chart-svg-desc", text: desc })
    ]);
    [0, 0.5, 1].forEach(function (f) {
      var y = T + ph - f * ph;
      svg.appendChild(el("svg:line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      svg.appendChild(el("svg:text", { x: L - 6, y: y + 4, class: "axis", "text-anchor": "end",
                                       text: axisLabel(top * f) }));
    });
    for (var d = 1; d <= n; d++) {
      var x = L + (d - 1) * step + (step - bw) / 2;
      var row = byDay[d];
      if (row) {
        var h = Math.max(1, Number(row.cost) / top * ph);
        svg.appendChild(el("svg:rect", { x: x.toFixed(1), y: (T + ph - h).toFixed(1), width: bw.toFixed(1),
                                         height: h.toFixed(1), class: "bar", "data-day": row.day }, [
          el("svg:title", { text: row.day + ": " + A.usd(row.cost) + ", " + row.requests + " request(s)" })
        ]));
      }
      if (d === 1 || d % (W < 500 ? 10 : 5) === 0 || d === n) {
        svg.appendChild(el("svg:text", { x: (L + (d - 0.5) * step).toFixed(1), y: H - 10, class: "axis",
                                         "text-anchor": "middle", text: String(d) }));
      }
    }
    var box = $("#chart");
    box.textContent = "";
    box.appendChild(svg);
    $("#chart-caption").textContent = desc + " Days are UTC.";
    $("#sum-cost").textContent = A.usd(daily.total);
    $("#sum-cost").title = "$" + daily.total;
    $("#sum-requests").textContent = String(daily.requests);
    var rows = $("#daily-rows");
    rows.textContent = "";
    daily.days.forEach(function (r) {
      rows.appendChild(el("tr", {}, [el("td", { text: r.day }),
                                     el("td", { class: "num", text: A.usd(r.cost), title: "$" + r.cost }),
                                     el("td", { class: "num", text: String(r.requests) })]));
    });
  }

  /* ---- loading --------------------------------------------------------------- */

  function refresh() {
    var usageQ = query({ month: state.month, email: state.email, sort: state.sort,
                         skip: state.skip, limit: state.limit });
    var dailyQ = query({ month: state.month, email: state.email });
    return Promise.all([A.api("/admin/api/caps"), A.api("/admin/api/usage?" + usageQ),
                        A.api("/admin/api/daily?" + dailyQ)])
      .then(function (r) {
        renderCaps(r[0]);
        renderUsage(r[1]);
        renderChart(r[2]);
        document.body.setAttribute("data-loaded", "true");
      }, fail);
  }

  function filterEmail(email) {
    $("#f-email").value = email;
    state.email = email;
    state.skip = 0;
    refresh();
  }

  function wire() {
    $("#sign-out").addEventListener("click", A.signOut);
    $("#f-month").value = state.month;
    $("#filters").addEventListener("submit", function (e) {
      e.preventDefault();
      state.month = $("#f-month").value || A.monthNow();
      state.email = $("#f-email").value.trim().toLowerCase();
      state.limit = Number($("#f-limit").value);
      state.sort = $("#f-sort").value;
      state.skip = 0;
      refresh();
    });
    document.querySelectorAll("#usage th[data-sort] button").forEach(function (b) {
      b.addEventListener("click", function () {
        state.sort = b.parentNode.getAttribute("data-sort");
        $("#f-sort").value = state.sort;
        state.skip = 0;
        refresh();
      });
    });
    $("#prev").addEventListener("click", function () {
      state.skip = Math.max(0, state.skip - state.limit);
      refresh();
    });
    $("#next").addEventListener("click", function () {
      state.skip += state.limit;
      refresh();
    });
    $("#cap-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var who = $("#cap-who").value.trim(), usd = $("#cap-usd").value.trim();
      if (!usd) {
        A.announce("Enter a monthly cap in USD, or use Clear cap.", "error");
        $("#cap-usd").focus();
        return;
      }
      setCap(who, usd);
    });
    $("#cap-clear").addEventListener("click", function () {
      var who = $("#cap-who").value.trim();
      if (!who) {
        A.announce("Enter the email or @domain whose cap to clear.", "error");
        $("#cap-who").focus();
        return;
      }
      setCap(who, null);
    });
    $("#revoke-form").addEventListener("submit", function (e) {
      e.preventDefault();
      revoke($("#revoke-email").value.trim());
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire();
    var s = A.session();
    if (!s) {
      deny("Sign in first: this page is for administrators.");
      return;
    }
    A.api("/admin/api/me").then(function (me) {
      /* Everyone with a token has a `me`; its role says who is an admin. */
      if (!me.admin) {
        deny("You are signed in as " + s.email + ", who is not an administrator.");
        return;
      }
      $("#admin").hidden = false;
      return refresh();
    }, function (err) {
      if (err.status === 403) {
        deny("You are signed in as " + s.email + ", who is not an administrator.");
      } else {
        fail(err);
        if (err.status !== 401) deny(err.message);
      }
    });
  });
})();
