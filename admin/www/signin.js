/* The sign-in page: Google's button, the credential exchanged at /token
 * for a gateway token, then the token, the base URL, a working snippet and
 * this month's figures. */
(function () {
  "use strict";
  var A = window.AIProxy, $ = A.$;
  var GSI = "https://accounts.google.com/gsi/client";
  var MODEL = "gpt-4o-mini";

  function baseUrl() {
    return window.location.origin + "/openai/v1";
  }

  function show(signedIn) {
    $("#signed-out").hidden = signedIn;
    $("#signed-in").hidden = !signedIn;
    $("#sign-out").hidden = !signedIn;
  }

  function signInError(text) {
    var p = $("#signin-error");
    p.textContent = text;
    p.hidden = !text;
  }

  /* Google Identity Services calls this with {credential: <ID token>}.
   * Exposed so a page test can sign in with a test ID token. */
  function onCredential(response) {
    signInError("");
    if (!response || !response.credential) {
      signInError("Google did not return a credential. Please try again.");
      return Promise.resolve();
    }
    A.announce("Signing in…");
    return A.api("/token", { method: "POST", form: { credential: response.credential },
                            anonymous: true })
      .then(function (r) {
        /* Kept in this page's memory only, to ask /token for a token per
         * course while Google's credential is valid; never stored. */
        if (window.AIProxyMine) window.AIProxyMine.credential(response.credential);
        A.setSession(r);
        A.announce("Signed in as " + r.email + ".", "ok");
        render();
      }, function (err) {
        A.announce("");
        signInError(err.message);
      });
  }
  window.aiproxyCredential = onCredential;

  function snippets(token) {
    var py = [
      "from openai import OpenAI",
      "",
      "client = OpenAI(",
      "    base_url=\"" + baseUrl() + "\",",
      "    api_key=\"" + token + "\",",
      ")",
      "reply = client.chat.completions.create(",
      "    model=\"" + MODEL + "\",",
      "    messages=[{\"role\": \"user\", \"content\": \"Say hello\"}],",
      ")",
      "print(reply.choices[0].message.content)"
    ].join("\n");
    var sh = [
      "curl " + baseUrl() + "/chat/completions \\",
      "  -H \"Authorization: Bearer " + token + "\" \\",
      "  -H \"Content-Type: application/json\" \\",
      "  -d '{\"model\": \"" + MODEL + "\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello\"}]}'"
    ].join("\n");
    $("#snippet-python").textContent = py;
    $("#snippet-curl").textContent = sh;
  }

  function figures(me) {
    var row = (me.months || []).filter(function (m) { return m.month === me.month; })[0] ||
              { monthlyCost: "0", monthlyRequests: 0, reserved: "0" };
    $("#spent").textContent = A.usd(row.monthlyCost);
    $("#spent").title = "$" + row.monthlyCost;
    $("#cap").textContent = A.usd(me.cap);
    $("#cap").title = "$" + me.cap;
    $("#requests").textContent = String(row.monthlyRequests);
    $("#remaining").textContent = A.usd(me.remaining);
    $("#remaining").title = "$" + me.remaining;
    var pct = Math.round(A.ratio(row.monthlyCost, me.cap) * 100);
    var meter = $("#meter");
    meter.setAttribute("aria-valuenow", String(pct));
    meter.setAttribute("aria-valuetext", pct + "% of the cap used");
    meter.classList.toggle("high", pct >= 80);
    meter.firstElementChild.style.width = pct + "%";
    $("#month-note").textContent = "Month " + me.month + " (UTC). The cap resets on the 1st.";
  }

  function render() {
    var s = A.session();
    show(!!s);
    if (!s) return;
    $("#who").textContent = s.email;
    $("#token").textContent = s.token;
    $("#base-url").textContent = baseUrl();
    snippets(s.token);
    A.api("/usage/me").then(figures, function (err) {
      if (err.status === 401) {
        /* Revoked or expired: start again. */
        A.clearSession();
        show(false);
        signInError(err.message);
        return;
      }
      A.announce("Usage unavailable: " + err.message, "error");
    });
    A.api("/admin/api/me").then(function (me) {
      $("#nav-admin").hidden = me.role !== "admin" && me.role !== "instructor";
      $("#nav-admin").textContent = me.role === "admin" ? "Admin" : "Courses";
      if (window.AIProxyMine) window.AIProxyMine.render(me);
    }, function () {
      $("#nav-admin").hidden = true;
    });
  }

  function gsiProblem(text) {
    var p = $("#gsi-problem");
    p.textContent = text;
    p.hidden = false;
    $("#gsi-button").hidden = true;
  }

  /* Sign-in through mod_auth_openidc: a link to its location, which sends
   * the browser back here with ?signin=oidc once the provider has
   * authenticated it; then the token is fetched from there (the provider's
   * session cookie rides along), so it is never in a URL. */
  function loadOidc(config) {
    var path = config.oidc_signin;
    if (!path) return false;
    if (window.AIProxyMine) window.AIProxyMine.oidc(path);
    var params = new URLSearchParams(window.location.search);
    var link = $("#oidc-signin");
    var course = sessionStorage.getItem("aiproxy.pending-course");
    link.href = path + (course ? "?course=" + encodeURIComponent(course) : "");
    link.hidden = false;
    if (params.get("signin") === "oidc") {
      window.history.replaceState(null, "", window.location.pathname);
      var q = params.get("course") ? "?course=" + encodeURIComponent(params.get("course")) : "";
      A.announce("Signing in…");
      A.api(path + q, { anonymous: true }).then(function (r) {
        sessionStorage.removeItem("aiproxy.pending-course");
        A.setSession(r);
        if (config.oidc_signout) sessionStorage.setItem("aiproxy.oidc-signout", config.oidc_signout);
        A.announce("Signed in as " + r.email + ".", "ok");
        render();
      }, function (err) {
        A.announce("");
        signInError(err.message);
      });
    }
    return true;
  }

  function loadGoogle(config) {
    var oidc = loadOidc(config);
    if (!config.client_id) {
      if (!oidc) gsiProblem("Sign-in is not configured on this server.");
      else $("#gsi-button").hidden = true;
      return;
    }
    if (config.allowed_domains && config.allowed_domains.length) {
      var d = $("#domains");
      d.textContent = "Accounts of " + config.allowed_domains.join(", ") + " may sign in.";
      d.hidden = false;
    }
    var script = A.el("script", { src: GSI, async: true });
    var timer = window.setTimeout(function () {
      gsiProblem("Google's sign-in button has not loaded. Check your connection " +
                 "or allow accounts.google.com, then reload.");
    }, 8000);
    script.onload = function () {
      window.clearTimeout(timer);
      var opts = { client_id: config.client_id, callback: onCredential,
                   ux_mode: "popup", auto_select: false, itp_support: true };
      if (config.allowed_domains && config.allowed_domains.length === 1) {
        opts.hd = config.allowed_domains[0];
      }
      google.accounts.id.initialize(opts);
      google.accounts.id.renderButton($("#gsi-button"),
        { theme: "outline", size: "large", text: "signin_with", shape: "pill" });
    };
    script.onerror = function () {
      window.clearTimeout(timer);
      gsiProblem("Google's sign-in button could not be loaded. Check your " +
                 "connection or allow accounts.google.com, then reload.");
    };
    document.head.appendChild(script);
  }

  /* tools/run's development link: /admin/#token=<a short-lived token>. A
   * fragment is never sent to a server, so it reaches no log; it is taken
   * out of the address bar at once. */
  function tokenFromFragment() {
    var m = /^#token=([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)$/.exec(window.location.hash);
    if (!m) return;
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    try {
      var b64 = m[1].split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var claims = JSON.parse(atob(b64));
      if (claims.email) A.setSession({ token: m[1], email: claims.email, course: claims.course });
    } catch (e) {
      signInError("The sign-in link is not valid.");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    tokenFromFragment();
    $("#sign-out").addEventListener("click", A.signOut);
    $("#copy-token").addEventListener("click", function (e) {
      A.copyText($("#token").textContent, e.currentTarget);
    });
    $("#copy-base").addEventListener("click", function (e) {
      A.copyText($("#base-url").textContent, e.currentTarget);
    });
    $("#copy-python").addEventListener("click", function (e) {
      A.copyText($("#snippet-python").textContent, e.currentTarget);
    });
    $("#copy-curl").addEventListener("click", function (e) {
      A.copyText($("#snippet-curl").textContent, e.currentTarget);
    });
    render();
    /* The configuration also when signed in: a course token may come from
     * the organisation's sign-in. */
    A.api("/token/config", { anonymous: true }).then(function (config) {
      if (!A.session()) loadGoogle(config);
      else if (config.oidc_signin && window.AIProxyMine) window.AIProxyMine.oidc(config.oidc_signin);
    }, function (err) {
      if (!A.session()) gsiProblem("Sign-in is unavailable: " + err.message);
    });
  });
})();
