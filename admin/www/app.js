/* Shared by the sign-in page and the admin page: the session (the gateway
 * token, kept in sessionStorage for this tab only), calls to the gateway's
 * JSON API, safe DOM building, money display. No build step, no library. */
(function () {
  "use strict";

  var KEY = "aiproxy.session";

  function session() {
    try {
      var s = JSON.parse(sessionStorage.getItem(KEY) || "null");
      return s && s.token && s.email ? s : null;
    } catch (e) {
      return null;
    }
  }

  function setSession(s) {
    sessionStorage.setItem(KEY, JSON.stringify({ token: s.token, email: s.email,
                                               course: s.course || null }));
  }

  function clearSession() {
    sessionStorage.removeItem(KEY);
  }

  /* An Error carrying the gateway's status and error code. */
  function apiError(status, body) {
    var e = (body && body.error) || {};
    var err = new Error(e.message || "The gateway answered " + status + ".");
    err.status = status;
    err.code = e.code || "";
    return err;
  }

  /* fetch() with the session's token; resolves to parsed JSON, rejects
   * with apiError. */
  function api(path, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    var s = session();
    if (s && !opts.anonymous) headers.Authorization = "Bearer " + s.token;
    var init = { method: opts.method || "GET", headers: headers, cache: "no-store" };
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    } else if (opts.form) {
      init.body = new URLSearchParams(opts.form);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (text) {
        var body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch (e) {
          body = null;
        }
        if (!r.ok) throw apiError(r.status, body);
        return body;
      });
    }, function () {
      throw apiError(0, { error: { message: "The gateway cannot be reached." } });
    });
  }

  /* el("p", {class: "x", text: "hi"}, [children]): text is never parsed as
   * HTML, so data from the server cannot inject markup. */
  function el(tag, attrs, children) {
    var svg = tag.indexOf("svg:") === 0;
    var node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
                   : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k.indexOf("on") === 0) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function $(sel, root) {
    return (root || document).querySelector(sel);
  }

  /* "12.3456789" -> "$12.345679" for display; the exact amount stays in
   * the string the server sent (shown as a tooltip). Rounds the decimal
   * string itself, no floating point. */
  function usd(s, places) {
    if (s === null || s === undefined) return "—";
    places = places === undefined ? 6 : places;
    var neg = s.charAt(0) === "-";
    var t = neg ? s.slice(1) : s;
    var parts = t.split(".");
    var whole = parts[0] || "0", frac = parts[1] || "";
    if (frac.length > places && Number(whole) >= 1) {
      var digits = (whole + frac.slice(0, places)).split("").map(Number);
      if (Number(frac.charAt(places)) >= 5) {
        for (var i = digits.length - 1; i >= 0; i--) {
          if (digits[i] < 9) { digits[i]++; break; }
          digits[i] = 0;
          if (i === 0) digits.unshift(1);
        }
      }
      var all = digits.join("");
      whole = all.slice(0, all.length - places);
      frac = all.slice(all.length - places).replace(/0+$/, "");
    }
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (neg ? "-$" : "$") + whole + (frac ? "." + frac : "");
  }

  /* A money string as a number: for chart heights and bars only. */
  function ratio(a, b) {
    var x = Number(a), y = Number(b);
    return y > 0 ? Math.max(0, Math.min(1, x / y)) : (x > 0 ? 1 : 0);
  }

  function monthNow() {
    return new Date().toISOString().slice(0, 7);
  }

  function announce(text, kind) {
    var live = $("#status");
    if (!live) return;
    live.className = "status" + (kind ? " " + kind : "");
    live.textContent = "";
    /* A fresh text node makes screen readers read it again. */
    window.setTimeout(function () { live.textContent = text; }, 30);
  }

  function copyText(text, button) {
    function done(ok) {
      var old = button.getAttribute("data-label") || button.textContent;
      button.setAttribute("data-label", old);
      button.textContent = ok ? "Copied" : "Press Ctrl+C";
      announce(ok ? "Copied to the clipboard." : "Copy failed: select the text and copy it.",
               ok ? "ok" : "error");
      window.setTimeout(function () { button.textContent = old; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); },
                                                function () { done(false); });
    } else {
      var area = el("textarea", { "aria-hidden": "true", class: "offscreen" });
      area.value = text;
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      done(ok);
    }
  }

  /* GET path with the session's token and save the answer (CSV) as a
   * file: a plain link could not carry the token. */
  function download(path, filename) {
    var s = session();
    var headers = { Accept: "text/csv" };
    if (s) headers.Authorization = "Bearer " + s.token;
    return fetch(path, { headers: headers, cache: "no-store" }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (e) { body = null; }
          throw apiError(r.status, body);
        });
      }
      return r.blob().then(function (blob) {
        var url = URL.createObjectURL(blob);
        var a = el("a", { href: url, download: filename, class: "offscreen", text: filename });
        document.body.appendChild(a);
        a.click();
        document.body.removeChild(a);
        window.setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
        return blob;
      });
    }, function (err) {
      if (err && err.status !== undefined) throw err;
      throw apiError(0, { error: { message: "The gateway cannot be reached." } });
    });
  }

  /* URL query from an object, leaving out empty values. */
  function query(params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) {
      if (params[k] !== "" && params[k] !== null && params[k] !== undefined) q.set(k, params[k]);
    });
    return q.toString();
  }

  function when(iso) {
    if (!iso) return "";
    if (typeof iso === "number") iso = new Date(iso * 1000).toISOString();
    return String(iso).replace("T", " ").slice(0, 19);
  }

  /* A percentage of a cap from two decimal strings, for display only. */
  function pct(spent, cap) {
    if (cap === null || cap === undefined || Number(cap) <= 0) return Number(spent) > 0 ? 100 : 0;
    return Math.round(Number(spent) / Number(cap) * 100);
  }

  /* Audit entries as table rows (an entry's before and after as short
   * JSON; the log never holds a token). */
  function auditRows(body, entries, withCourse) {
    function short(v) {
      return v === null || v === undefined ? "—" : (typeof v === "string" ? v : JSON.stringify(v));
    }
    body.textContent = "";
    entries.forEach(function (e) {
      body.appendChild(el("tr", {}, [
        el("td", { "data-label": "Time", text: when(e.time) }),
        el("td", { "data-label": "Who", text: e.who + (e.role ? " (" + e.role + ")" : "") }),
        el("td", { "data-label": "Action", text: e.action }),
        el("td", { "data-label": "Target", text: e.target || "" }),
        withCourse ? el("td", { "data-label": "Course", text: e.course || "—" }) : null,
        el("td", { "data-label": "Change", class: "change",
                   text: short(e.before) + " → " + short(e.after) })
      ]));
    });
  }

  /* a - b for two decimal money strings, floored at 0, exact (as
   * pico-dollar BigInts). */
  function minus(a, b) {
    function pico(x) {
      var parts = String(x || "0").split(".");
      return BigInt(parts[0] || "0") * 1000000000000n +
             BigInt(((parts[1] || "") + "000000000000").slice(0, 12));
    }
    var d = pico(a) - pico(b);
    if (d < 0n) d = 0n;
    var whole = d / 1000000000000n, frac = String(d % 1000000000000n).padStart(12, "0")
      .replace(/0+$/, "");
    return String(whole) + (frac ? "." + frac : "");
  }

  function tokens(n) {
    return n === undefined || n === null ? "—" : Number(n).toLocaleString("en-US");
  }

  /* Request records (the reports API's `requests`) as table rows. */
  function renderRequests(body, rows) {
    body.textContent = "";
    rows.forEach(function (q) {
      body.appendChild(el("tr", {}, [
        el("td", { "data-label": "Time", text: when(q.time) }),
        el("td", { "data-label": "Endpoint", text: q.endpoint || "" }),
        el("td", { "data-label": "Model", text: q.model || "" }),
        el("td", { class: "num", "data-label": "Tokens in/out",
                   text: tokens(q.input_tokens) + " / " + tokens(q.output_tokens) }),
        el("td", { class: "num", "data-label": "Cost", title: "$" + q.cost },
           [usd(q.cost), q.estimated ? el("span", { class: "tag", text: "estimated" }) : null]),
        el("td", { class: "num", "data-label": "Status", text: String(q.status || "") })
      ]));
    });
  }

  /* Per-model totals (the reports API's `models`) as table rows. */
  function renderModels(body, rows) {
    body.textContent = "";
    rows.forEach(function (m) {
      body.appendChild(el("tr", {}, [
        el("td", { "data-label": "Model", text: m.model || "" }),
        el("td", { class: "num", "data-label": "Requests", text: String(m.requests || 0) }),
        el("td", { class: "num", "data-label": "Tokens in", text: tokens(m.input_tokens) }),
        el("td", { class: "num", "data-label": "Tokens out", text: tokens(m.output_tokens) }),
        el("td", { class: "num", "data-label": "Cost", title: "$" + m.cost, text: usd(m.cost) })
      ]));
    });
  }

  /* A session from the organisation's sign-in ends mod_auth_openidc's
   * session too (AIProxyOIDCSignOut), or the next click would be signed
   * straight back in: a shared computer's next user would be this one. */
  function signOut() {
    var logout = sessionStorage.getItem("aiproxy.oidc-signout");
    clearSession();
    sessionStorage.removeItem("aiproxy.oidc-signout");
    if (window.google && google.accounts && google.accounts.id) {
      google.accounts.id.disableAutoSelect();
    }
    window.location.href = logout || "./";
  }

  window.AIProxy = {
    session: session, setSession: setSession, clearSession: clearSession,
    api: api, el: el, $: $, usd: usd, ratio: ratio, monthNow: monthNow,
    announce: announce, copyText: copyText, signOut: signOut, download: download,
    query: query, when: when, pct: pct, auditRows: auditRows, minus: minus,
    renderRequests: renderRequests, renderModels: renderModels
  };
})();
