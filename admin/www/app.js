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
    sessionStorage.setItem(KEY, JSON.stringify({ token: s.token, email: s.email }));
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

  function signOut() {
    clearSession();
    if (window.google && google.accounts && google.accounts.id) {
      google.accounts.id.disableAutoSelect();
    }
    window.location.href = "./";
  }

  window.AIProxy = {
    session: session, setSession: setSession, clearSession: clearSession,
    api: api, el: el, $: $, usd: usd, ratio: ratio, monthNow: monthNow,
    announce: announce, copyText: copyText, signOut: signOut
  };
})();
