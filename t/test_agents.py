"""Coding agents through the gateway: Claude Code (claude -p) and the Codex
CLI (codex exec), the real npm packages tools/setup.sh --test installs into
.tools/npm. Each run gets a fresh HOME (no user configuration), the
vendors' non-essential traffic switched off, and a proxy that goes nowhere
for anything but loopback, so a CLI that tried to reach its vendor would
fail rather than leave the machine."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from bson import Int64

from conftest import ANTHROPIC_KEY, PRICES, PROVIDER_KEY, ROOT, Gateway, make_token
from helpers import new_email

BIN = os.path.join(ROOT, ".tools/npm/node_modules/.bin")
CLAUDE = os.path.join(BIN, "claude")
CODEX = os.path.join(BIN, "codex")
REPLY = "This is a fake reply."

# The anthropic-beta values Claude Code 2.1 sends, none of which changes a
# price: without context-management and advanced-tool-use Anthropic refuses
# its requests (as the fake upstream does). README "Coding agents".
CLAUDE_BETAS = ("interleaved-thinking-2025-05-14 context-management-2025-06-27 "
                "claude-code-20250219 advanced-tool-use-2025-11-20 "
                "thinking-token-count-2026-05-13 effort-2025-11-24 "
                "mid-conversation-tool-changes-2026-07-01")


def _need(path):
    if not os.access(path, os.X_OK):
        pytest.skip("%s is not installed (tools/setup.sh --test installs it)" % path)


def _env(home, **extra):
    """A CLI's whole environment: nothing of the user's, loopback only."""
    e = {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8",
         "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
         "NO_PROXY": "127.0.0.1,localhost"}
    e.update(extra)
    return e


def run_claude(base_url, token, prompt, *args, timeout=120, **more_env):
    _need(CLAUDE)
    home = tempfile.mkdtemp(prefix="aiproxy-claude-")
    env = _env(home, ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=token,
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1",
               DISABLE_TELEMETRY="1", DISABLE_ERROR_REPORTING="1",
               CLAUDE_CODE_MAX_RETRIES="0", **more_env)
    try:
        return subprocess.run([CLAUDE, "-p", prompt] + list(args), env=env, cwd=home,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# Codex's web search is a hosted tool billed per call, which the gateway
# refuses: it is switched off, as the README says.
CODEX_CONFIG = '''model = "%(model)s"
model_provider = "aiproxy"
web_search = "disabled"

[model_providers.aiproxy]
name = "aiproxy"
base_url = "%(base)s"
env_key = "AIPROXY_TOKEN"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
'''


def run_codex(base_url, token, prompt, model="gpt-4o-mini", timeout=120):
    _need(CODEX)
    home = tempfile.mkdtemp(prefix="aiproxy-codex-")
    codex_home = os.path.join(home, ".codex")
    os.makedirs(codex_home)
    with open(os.path.join(codex_home, "config.toml"), "w") as f:
        f.write(CODEX_CONFIG % {"model": model, "base": base_url})
    env = _env(home, CODEX_HOME=codex_home, AIPROXY_TOKEN=token)
    try:
        return subprocess.run([CODEX, "exec", "--skip-git-repo-check", "--ephemeral",
                               "--sandbox", "read-only", prompt], env=env, cwd=home,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def billed_cost(rec):
    """What the fake provider billed for one request, at conf/prices.conf."""
    p = PRICES[rec["model"]]
    return (rec["input"] * p["input"] + rec["cached"] * p.get("cached", 0)
            + rec["cache_write"] * p.get("cache_write", 0)
            + rec.get("cache_write_1h", 0) * p.get("cache_write_1h", 0)
            + rec["output"] * p["output"])


def month(gw, email):
    return gw.db().months.find_one({"email": email}) or {"spent": 0, "requests": 0,
                                                          "reserved": 0, "holds": {}}


def bodies(up):
    return [(r, json.loads(r["body"] or "{}")) for r in up.requests()]


def assert_charged_what_was_billed(gw, up, email):
    billed = up._call("GET", "/__billed")
    ok = [b for b in billed if b["status"] == 200]
    assert ok, billed
    m = month(gw, email)
    assert m["spent"] == sum(billed_cost(b) for b in ok), (m, billed)
    assert m["requests"] == len([b for b in ok if not b["path"].endswith(
        "/count_tokens")]), (m, billed)
    assert m["reserved"] == 0 and m["holds"] == {}, m


def assert_secrets_kept(up, token, key, header):
    for r in up.requests():
        assert r["headers"].get(header) == key, r["headers"]
        raw = json.dumps(r)
        assert token not in raw


@pytest.fixture(scope="module")
def gw(store, upstream):
    """The tests' gateway, plus the betas Claude Code needs."""
    with Gateway(store, upstream, extra_conf="AIProxyAnthropicBeta %s\n"
                 % CLAUDE_BETAS) as g:
        yield g


# ------------------------------------------------------------- Claude Code

def test_claude_code_native(gw, up):
    """claude -p against a Claude model: the fake's reply printed, the
    month charged exactly what the provider billed, the provider saw the
    server's key only, and Claude Code's betas and fields got through."""
    email = new_email("claude")
    token = make_token(email)
    p = run_claude(gw.url("/anthropic"), token, "Say hello.", "--model", "claude-haiku-4-5")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == REPLY
    sent = bodies(up)
    paths = {r["path"] for r, _ in sent}
    assert paths <= {"/v1/messages", "/v1/messages/count_tokens"}, paths
    msgs = [(r, b) for r, b in sent if r["path"] == "/v1/messages"]
    assert msgs and all(b["stream"] is True for _, b in msgs)
    assert all(b["status"] == 200 for b in up._call("GET", "/__billed"))
    r, b = msgs[-1]
    assert b["model"] == "claude-haiku-4-5" and b["tools"] and b["context_management"]
    assert any("cache_control" in s for s in b["system"])
    assert "context-management-2025-06-27" in r["headers"]["anthropic-beta"]
    assert_secrets_kept(up, token, ANTHROPIC_KEY, "x-api-key")
    assert_charged_what_was_billed(gw, up, email)


def test_claude_code_without_the_betas_pays_for_refusals_it_works_around(gateway, up):
    """The suite's gateway has no AIProxyAnthropicBeta, so Claude Code's
    betas are removed; Anthropic then refuses the fields they enable and
    Claude Code retries without them (more input: every tool loaded). The
    refusals cost nothing and the answer is charged exactly. Why the README
    names the betas."""
    email = new_email("claude-nobeta")
    p = run_claude(gateway.url("/anthropic"), make_token(email), "Say hello.",
                   "--model", "claude-haiku-4-5")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == REPLY
    sent = bodies(up)
    assert all("anthropic-beta" not in r["headers"] for r, _ in sent)
    assert "context_management" in sent[0][1]
    billed = up._call("GET", "/__billed")
    assert [b["status"] for b in billed][0] == 400 and billed[-1]["status"] == 200
    assert_charged_what_was_billed(gateway, up, email)


def test_claude_code_revoked_token(gw, up):
    email = new_email("claude-revoked")
    token = make_token(email)
    gw.db().users.update_one({"_id": email}, {"$set": {"revoked_at": Int64(int(time.time()) + 5)}},
                             upsert=True)
    p = run_claude(gw.url("/anthropic"), token, "Say hello.", "--model", "claude-haiku-4-5")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "401" in out and "this token was revoked; sign in again." in out, out
    assert up.requests() == []
    assert month(gw, email)["spent"] == 0


def test_claude_code_over_cap(gw, up):
    email = new_email("claude-cap")
    gw.set_cap(email, 0)
    p = run_claude(gw.url("/anthropic"), make_token(email), "Say hello.",
                   "--model", "claude-haiku-4-5")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "(429)" in out and "you used $0 of $0: nothing is left this month" in out, out
    assert up.requests() == []
    assert month(gw, email)["spent"] == 0


def test_claude_code_on_an_openai_model(gw, up):
    """claude -p --model gpt-4o-mini on the model-routed /v1: its Messages
    requests go to OpenAI as streamed chat completions with usage and its
    tools as functions, and the month pays what OpenAI billed. Claude Code
    asks 32000 output tokens of any model it does not know; gpt-4o-mini
    gives at most 16384, so the student lowers it (README)."""
    email = new_email("claude-gpt")
    token = make_token(email)
    p = run_claude(gw.base, token, "Say hello.", "--model", "gpt-4o-mini",
                   CLAUDE_CODE_MAX_OUTPUT_TOKENS="4096")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == REPLY
    sent = bodies(up)
    assert sent and {r["path"] for r, _ in sent} == {"/v1/chat/completions"}
    for r, b in sent:
        assert b["model"] == "gpt-4o-mini" and b["stream"] is True
        assert b["stream_options"]["include_usage"] is True
        assert b["tools"] and all(t["type"] == "function" for t in b["tools"])
        assert b["messages"][0]["role"] in ("system", "developer")
    assert_secrets_kept(up, token, "Bearer " + PROVIDER_KEY, "authorization")
    assert_charged_what_was_billed(gw, up, email)


# ------------------------------------------------------------- Codex CLI

def test_codex_exec(gw, up):
    email = new_email("codex")
    token = make_token(email)
    p = run_codex(gw.url("/openai/v1"), token, "Say hello.")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1] == REPLY, p.stdout
    sent = bodies(up)
    assert {r["path"] for r, _ in sent} == {"/v1/responses"}
    for r, b in sent:
        assert b["stream"] is True and b["store"] is False and b["tools"], b.keys()
        assert b["model"] == "gpt-4o-mini"
        # Its sub-agent functions come as a namespace (free, passed); its
        # web search (billed per call) is off in the configuration.
        types = {t["type"] for t in b["tools"]}
        assert "namespace" in types and "web_search" not in types, types
    assert_secrets_kept(up, token, "Bearer " + PROVIDER_KEY, "authorization")
    assert_charged_what_was_billed(gw, up, email)


def test_codex_over_cap(gw, up):
    """Over the cap nothing goes out and Codex says so; it reads the 429's
    code (insufficient_quota, OpenAI's) and prints its own words for it
    rather than the gateway's message."""
    email = new_email("codex-cap")
    gw.set_cap(email, 0)
    p = run_codex(gw.url("/openai/v1"), make_token(email), "Say hello.")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "ERROR: Quota exceeded." in out, out
    assert up.requests() == []
    assert month(gw, email)["spent"] == 0
