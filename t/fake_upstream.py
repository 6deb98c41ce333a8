#!/usr/bin/env python3
"""Loopback fake of the OpenAI and Anthropic HTTP APIs, for mod_aiproxy tests.

Stdlib only.  Run:  python3 t/fake_upstream.py --port 0 [--host 127.0.0.1] [--name label]
prints "READY <port>" once listening.  Or import:  server, port = start(port=0)
and later  server.stop().

Routes (matched on the path suffix, so any prefix works: /v1/..., /openai/v1/...):
  POST .../chat/completions      OpenAI chat.completion (stream: chat.completion.chunk SSE)
  POST .../embeddings            OpenAI embeddings list
  GET  .../models, .../models/ID OpenAI model list/object (Anthropic shape if the
                                 request carries an anthropic-version header)
  POST .../responses             OpenAI Responses API (stream: typed events)
  POST .../messages              Anthropic message (stream: Anthropic events)
  POST .../messages/count_tokens Anthropic {"input_tokens": N}
  POST .../moderations           OpenAI moderation: {"id", "model", "results": [one per
                                 input: {"flagged", "categories", "category_scores",
                                 "category_applied_input_types"}]}; model defaults to
                                 omni-moderation-latest; an input is flagged (violence)
                                 when its text holds the word "kill"
  POST .../images/generations    OpenAI images: {"created", "data": [n of {"url"} or
                                 {"b64_json"}, with "revised_prompt"]}; controls:
                                 X-Fake-Images (how many), X-Fake-B64-Bytes (size of each),
                                 X-Fake-Raw (this body instead)
  POST .../audio/transcriptions  multipart form (file, model, response_format): json
                                 {"text", "usage": {"type": "duration", "seconds"}},
                                 verbose_json (+ "duration", "segments"), text, srt, vtt;
                                 the duration is the WAV file's, else X-Fake-Duration;
                                 X-Fake-No-Usage leaves usage out
  POST .../audio/speech          audio bytes of the response_format's type (mp3 default),
                                 X-Fake-Audio-Bytes long (default 64 per input character)

Token counts: prompt/input = whitespace-separated words over all message text
(incl. system / instructions), min 1; completion/output = words of the reply
(default "This is a fake reply." = 5).  Override with the X-Fake-Usage control.

Output limits, as the providers apply them: per choice the model would produce
`want` visible tokens (default: words of the reply, or of the tool-call
arguments) plus `reasoning` tokens; it produces reasoning first, then visible
text, in total at most the limit: chat min(max_completion_tokens, max_tokens),
Responses max_output_tokens, Anthropic max_tokens, else the model's maximum
(MAX_OUTPUT below; other models DEFAULT_MAX_OUTPUT = 4096).  Cut by the limit:
finish_reason "length" / status "incomplete" + incomplete_details
{"reason": "max_output_tokens"} (stream ends in response.incomplete) /
stop_reason "max_tokens"; a cut reply is its first words.  With `want` the text
is "w1 w2 ...", at most WORD_CAP (2000) words sent; usage counts them all.
Output tokens include reasoning (OpenAI: also in *_tokens_details.reasoning_tokens;
Anthropic: in output_tokens).  Chat `n` gives n equal choices: completion and
reasoning tokens are n times one choice's, the prompt is counted once.
X-Fake-Usage still overrides the counts reported (and so those billed).

Per-request controls (header X-Fake-<Name>, or key <name> in POST /__control/next;
header values win over queued control values):
  X-Fake-Status: N             answer error status N with a provider-shaped error body
  X-Fake-Retry-After: S        retry-after value sent with 429/503/529 (default 1)
  X-Fake-Delay-Ms: N           sleep before response headers
  X-Fake-Chunk-Delay-Ms: N     sleep between SSE events
  X-Fake-Split: N              write the body (SSE stream or JSON) in N-byte pieces
  X-Fake-Split-Delay-Ms: N     sleep between those pieces (default 0)
  X-Fake-CRLF: 1               SSE lines end in \\r\\n (cr: in a bare \\r)
  X-Fake-Cut-After: N          stream: close the connection abruptly after N events
  X-Fake-Usage: {json}         prompt_tokens, completion_tokens, cached_tokens,
                               cache_creation, cache_creation_1h (Anthropic's 1-hour
                               writes, also counted in cache_creation_input_tokens
                               and named in cache_creation{}), reasoning_tokens (Anthropic names
                               input_tokens, output_tokens, cache_read_input_tokens,
                               cache_creation_input_tokens accepted as aliases)
  X-Fake-Usage-Position: early|none   chat stream: usage chunk before the last
                               content chunk / never (only if include_usage)
  X-Fake-Hang: 1               never answer (wait up to 120 s, then close)
  X-Fake-Reply: text           reply text
  X-Fake-No-Chunked: 1         stream without chunked encoding (Connection: close)
  X-Fake-Want: N               visible output tokens per choice if unlimited
                               (reply "w1 w2 ... wN", see Output limits)
  X-Fake-Reasoning: N          N reasoning tokens per choice (count against the
                               limit).  Non-stream: Responses reasoning item /
                               Anthropic thinking block.  Streams: Responses
                               reasoning item with response.reasoning_summary_text
                               .delta events (one word each, <= 2000); Anthropic a
                               thinking block with thinking_delta events first;
                               chat streams show nothing of it
  X-Fake-Tool-Call: NAME       reply is a call of function NAME with arguments
                               {"text":"<reply text>"} (compact JSON; output tokens =
                               its words): chat message.tool_calls[0] (stream:
                               delta.tool_calls, arguments in pieces), finish_reason
                               "tool_calls"; Responses function_call item (stream:
                               response.function_call_arguments.delta); Anthropic
                               tool_use block (stream: input_json_delta partial_json),
                               stop_reason "tool_use"
  X-Fake-Web-Searches: N       Anthropic, with a web_search_20250305 tool: the model
                               searches N times (default 1), at most the tool's
                               max_uses: server_tool_use and web_search_tool_result
                               blocks, usage.server_tool_use.web_search_requests
                               (final in message_delta, 0 in message_start), billed
                               as "web_search" (X-Fake-Usage web_search_requests
                               overrides the count reported and billed)
  X-Fake-Stream-Content-Type: V  SSE streams sent with Content-Type V instead of
                               text/event-stream (a mislabelling upstream)
  X-Fake-Raw: text             answer 200 with exactly this body as application/json
                               (a garbage answer; not billed, not recorded in /__billed)
  X-Fake-Usage-On-Choice: 1    chat stream with include_usage: usage rides on the
                               last chunk that has choices (the last finish chunk);
                               no usage-only chunk

Anthropic beta fields: a messages or count_tokens request with `context_management`
needs anthropic-beta context-management-2025-06-27, a tool with `defer_loading`
advanced-tool-use-2025-11-20 (else 400 "<field>: Extra inputs are not permitted",
unbilled), as at Anthropic.

Request fields honoured: chat `n` (1..128, else 400); Responses `"background": true` (non-stream:
200 at once with status "queued", background true, output [], usage null; the
work is billed all the same; with stream true it streams as usual).

Billing ledger: every request to a model route (chat/completions, responses,
messages, embeddings, messages/count_tokens, moderations) appends, when it is accepted and
before any byte of the answer (so hangs and background work are billed in
full), the record
  {"seq", "path", "model", "input", "cached", "cache_write", "cache_write_1h", "output",
   "reasoning", "n", "background", "status"}
seq = that request's seq in /__requests; input = uncached input tokens (OpenAI
prompt_tokens - cached_tokens, Anthropic input_tokens); cached = cached/cache-read
tokens; web_search = searches run (only on Anthropic requests with the
web_search_20250305 tool); cache_write = Anthropic 5-minute cache writes, cache_write_1h = 1-hour
ones (OpenAI 0); output =
completion/output tokens incl. reasoning; reasoning = reasoning tokens (all
choices); status = HTTP status of the answer (a hang: the one it would have had).
The counts equal the usage the response reports (when it reports one). A
stream whose connection breaks (the client went, or cut_after) stops
generating there, as the providers do: its output becomes the output deltas
(text, reasoning, tool arguments; a token each) sent so far, and "cut": true.
Unbilled, recorded with zero counts and their status >= 400: forced X-Fake-Status
errors, invalid requests (bad JSON/usage, wrong method, bad embeddings input).
count_tokens is free at Anthropic, moderations at OpenAI: recorded with zero
counts, status 200.

Control API (not recorded):
  GET  /__health               {"status": "ok", "name", "port", "requests"}
  POST /__control/next         {"count": 2, "path": "substr"?, <control>: value, ...}
                               queued; the first entry whose optional path
                               substring matches applies to the next `count`
                               requests (count -1 = until reset)
  POST /__control/models       {"models": ["id", ...]}
  GET  /__requests             recorded requests (optional ?clear=1)
  GET  /__billed               billing ledger, oldest first (optional ?clear=1)
  POST /__reset                clear records, ledger, queued controls, model list
"""

import argparse
import base64
import collections
import hashlib
import itertools
import json
import os
import math
import re
import socket
import struct
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_REPLY = "This is a fake reply."
DEFAULT_MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "o3-mini",
]
HANG_SECONDS = 120.0

CONTROL_KEYS = {
    "status", "retry_after", "delay_ms", "chunk_delay_ms", "split",
    "split_delay_ms", "crlf", "cut_after", "usage", "usage_position",
    "hang", "reply", "no_chunked", "want", "reasoning", "tool_call",
    "stream_content_type", "usage_on_choice", "web_searches", "raw",
}

# Maximum output tokens per model, used when a request sets no limit.
MAX_OUTPUT = {
    "gpt-4o-mini": 16384, "gpt-4o": 16384,
    "gpt-4.1": 32768, "gpt-4.1-mini": 32768, "gpt-4.1-nano": 32768,
    "gpt-5": 128000, "gpt-5-mini": 128000, "gpt-5-nano": 128000,
    "o3": 100000, "o3-mini": 100000, "o4-mini": 100000,
    "claude-3-5-haiku-latest": 8192, "claude-3-5-haiku-20241022": 8192,
    "claude-haiku-4-5": 64000,
    "claude-sonnet-4-5": 64000, "claude-sonnet-4-20250514": 64000,
    "claude-opus-4-1": 32000,
}
DEFAULT_MAX_OUTPUT = 4096
WORD_CAP = 2000  # words of generated text actually sent (usage counts all)

_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def _new_id(prefix):
    return "%s%s%08x" % (prefix, _ID_PREFIX, next(_ID_COUNTER))


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _norm_key(k):
    k = k.strip().lower().replace("-", "_")
    if k.startswith("x_fake_"):
        k = k[7:]
    return k


def _truthy(v):
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(v)


def _int(v, default=0):
    if v is None or v == "":
        return default
    return int(float(v))


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


# ---------------------------------------------------------------- text / usage

def _text_of(x):
    """Collect the text of a message content / input structure."""
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, (list, tuple)):
        return " ".join(_text_of(i) for i in x)
    if isinstance(x, dict):
        parts = []
        for key in ("text", "content", "output"):
            v = x.get(key)
            if isinstance(v, (str, list, dict)):
                parts.append(_text_of(v))
        return " ".join(parts)
    return ""


def _words(s):
    return len(s.split())


def _reply_pieces(reply):
    pieces = re.findall(r"\s*\S+", reply)
    if pieces:
        pieces[-1] += reply[len("".join(pieces)):]
    return pieces or [reply]


class Usage:
    __slots__ = ("prompt", "completion", "cached", "cache_creation", "cache_creation_1h",
                 "reasoning", "web_search")

    def __init__(self, prompt, completion, override=None, reasoning=0):
        self.prompt = prompt
        self.completion = completion
        self.cached = 0
        self.cache_creation = 0
        self.cache_creation_1h = 0
        self.reasoning = reasoning
        self.web_search = None  # None: no search tool, no server_tool_use
        o = override or {}
        for keys, attr in (
            (("prompt_tokens", "input_tokens"), "prompt"),
            (("completion_tokens", "output_tokens"), "completion"),
            (("cached_tokens", "cache_read_input_tokens", "cache_read"), "cached"),
            (("cache_creation", "cache_creation_input_tokens"), "cache_creation"),
            (("cache_creation_1h",), "cache_creation_1h"),
            (("reasoning_tokens",), "reasoning"),
            (("web_search_requests",), "web_search"),
        ):
            for k in keys:
                if k in o and o[k] is not None:
                    setattr(self, attr, int(o[k]))
                    break

    def openai_chat(self):
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def openai_responses(self):
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.completion,
        }

    def anthropic(self, output_tokens=None):
        u = self._anthropic(output_tokens)
        if self.cache_creation_1h:
            # The split by duration, as Anthropic reports it.
            u["cache_creation"] = {"ephemeral_5m_input_tokens": self.cache_creation,
                                   "ephemeral_1h_input_tokens": self.cache_creation_1h}
        return u

    def _anthropic(self, output_tokens=None):
        u = {
            "input_tokens": self.prompt,
            "cache_creation_input_tokens": self.cache_creation + self.cache_creation_1h,
            "cache_read_input_tokens": self.cached,
            "output_tokens": self.completion if output_tokens is None else output_tokens,
        }
        if self.web_search is not None:
            # message_start (output_tokens given) has run no search yet
            u["server_tool_use"] = {"web_search_requests":
                                    0 if output_tokens is not None else self.web_search}
        return u


# ---------------------------------------------------------------- errors

_OPENAI_ERR = {
    400: ("invalid_request_error", None, "Bad request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    405: ("invalid_request_error", None, "Method not allowed"),
    409: ("invalid_request_error", None, "Conflict"),
    413: ("invalid_request_error", None, "Request too large"),
    422: ("invalid_request_error", None, "Unprocessable entity"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}
_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(status, message=None, param=None, code=None, etype=None):
    d_type, d_code, d_msg = _OPENAI_ERR.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error"))
    return {"error": {
        "message": message or "%s (fake_upstream forced %d)" % (d_msg, status),
        "type": etype or d_type,
        "param": param,
        "code": code if code is not None else d_code,
    }}


def anthropic_error(status, message=None, etype=None):
    t = etype or _ANTHROPIC_ERR.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {
        "type": t,
        "message": message or "%s (fake_upstream forced %d)" % (t, status),
    }}


class _Cut(Exception):
    """Raised to abort a stream and drop the connection."""


class _BadRequest(Exception):
    """An invalid model request: answered 400, not billed."""


def _check_betas(req, header):
    """Anthropic refuses a beta feature's fields without its anthropic-beta
    value (as Claude Code sends them): context editing, deferred tools."""
    betas = {b.strip() for b in header.split(",")}
    need = []
    if "context_management" in req:
        need.append(("context_management", "context-management-2025-06-27"))
    for i, t in enumerate(req.get("tools") or []):
        if isinstance(t, dict) and "defer_loading" in t:
            need.append(("tools.%d.defer_loading" % i, "advanced-tool-use-2025-11-20"))
    for field, beta in need:
        if beta not in betas:
            raise _BadRequest("%s: Extra inputs are not permitted" % field)


# ---------------------------------------------------------------- generation plan

MODERATION_MODEL = "omni-moderation-latest"
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent",
    "sexual", "sexual/minors", "violence", "violence/graphic")
# The categories omni-moderation also scores from images.
MODERATION_IMAGE_CATEGORIES = (
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence",
    "violence/graphic")


def _moderation_items(req):
    """The inputs as (text, has_image): a string, an array of strings, or
    (omni-moderation) an array of text and image_url parts, which is one input."""
    inp = req.get("input")
    if isinstance(inp, str):
        return [(inp, False)]
    if isinstance(inp, list) and inp and all(isinstance(i, str) for i in inp):
        return [(i, False) for i in inp]
    if isinstance(inp, list) and inp and all(isinstance(i, dict) for i in inp):
        text = " ".join(str(p.get("text", "")) for p in inp if p.get("type") == "text")
        image = any(p.get("type") == "image_url" for p in inp)
        if not all(p.get("type") in ("text", "image_url") for p in inp):
            raise _BadRequest("input parts must be of type text or image_url")
        return [(text, image)]
    raise _BadRequest("'input' must be a string, an array of strings or of "
                      "text and image_url parts")


def _limit_of(kind, req, model):
    """The output limit: the request's own, else the model's maximum."""
    keys = {"chat": ("max_completion_tokens", "max_tokens"),
            "responses": ("max_output_tokens",),
            "messages": ("max_tokens",)}.get(kind, ())
    vals = [max(0, int(req[k])) for k in keys
            if isinstance(req.get(k), (int, float)) and not isinstance(req.get(k), bool)]
    return min(vals) if vals else MAX_OUTPUT.get(model, DEFAULT_MAX_OUTPUT)


def _numbered(prefix, n):
    return " ".join("%s%d" % (prefix, i) for i in range(1, min(n, WORD_CAP) + 1))


class Plan:
    """What the model generates for one request and what the provider bills,
    fixed when the request is accepted (before any byte is sent)."""

    def __init__(self, kind, req, ctl, reply):
        self.kind = kind
        self.model = str(req.get("model", ""))
        if kind == "moderations" and not req.get("model"):
            self.model = MODERATION_MODEL
        self.background = kind == "responses" and _truthy(req.get("background") or "")
        self.n = 1
        self.tool = ""
        self.reasoning = self.visible = 0
        self.truncated = self.show_reasoning = False
        self.text, self.args, self.reasoning_text = reply, None, ""
        self.items = None
        if kind == "embeddings":
            prompt = self._embedding_items(req)
        elif kind == "chat":
            prompt = sum(_words(_text_of(m.get("content")))
                         for m in req.get("messages") or [] if isinstance(m, dict))
        elif kind == "responses":
            prompt = _words(_text_of(req.get("instructions"))) + _words(_text_of(req.get("input")))
        elif kind == "moderations":
            self.items = _moderation_items(req)
            prompt = sum(_words(t) for t, _ in self.items)
        else:  # messages, count_tokens
            prompt = _words(_text_of(req.get("system"))) + sum(
                _words(_text_of(m.get("content")))
                for m in req.get("messages") or [] if isinstance(m, dict))
        if kind in ("embeddings", "count_tokens", "moderations"):
            self.usage = Usage(max(1, prompt), 0, ctl.get("usage"))
            return

        if kind == "chat" and req.get("n") is not None:
            try:
                self.n = int(req["n"])
            except (TypeError, ValueError):
                raise _BadRequest("'n' must be an integer")
            if self.n < 1 or self.n > 128:
                raise _BadRequest("%d is not a valid value for 'n'" % self.n)
        self.limit = _limit_of(kind, req, self.model)
        want = ctl.get("want")
        want = None if want is None or want == "" else max(0, _int(want))
        asked_reasoning = max(0, _int(ctl.get("reasoning")))
        tool = ctl.get("tool_call")
        self.tool = str(tool).strip() if tool is not None else ""

        natural = want if want is not None else _words(
            _dumps({"text": reply}) if self.tool else reply)
        self.reasoning = min(asked_reasoning, self.limit)         # per choice
        self.visible = min(natural, self.limit - self.reasoning)  # per choice
        self.truncated = asked_reasoning + natural > self.limit
        self.show_reasoning = asked_reasoning > 0
        self.reasoning_text = _numbered("r", self.reasoning)
        if want is not None:
            self.text = _numbered("w", self.visible)
        elif self.visible < natural:  # the reply's first words
            self.text = "".join(_reply_pieces(reply)[:self.visible])
        if self.tool:
            self.args = _dumps({"text": self.text})
        self.usage = Usage(max(1, prompt), self.n * (self.reasoning + self.visible),
                           ctl.get("usage"), reasoning=self.n * self.reasoning)
        self.searches = 0
        if kind == "messages":
            uses = [t.get("max_uses") for t in req.get("tools") or []
                    if isinstance(t, dict) and t.get("type") == "web_search_20250305"]
            if uses:
                cap = sum(u if isinstance(u, int) and u > 0 else 1000 for u in uses)
                self.searches = min(cap, max(0, _int(ctl.get("web_searches", 1))))
                if self.usage.web_search is None:
                    self.usage.web_search = self.searches

    def _embedding_items(self, req):
        inp = req.get("input", "")
        if isinstance(inp, str):
            items = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(i, int) for i in inp):
            items = [inp]
        elif isinstance(inp, list):
            items = inp
        else:
            raise _BadRequest("'input' must be a string or array")
        self.items = items
        return sum(len(i) if isinstance(i, list) else _words(str(i)) for i in items)

    @property
    def openai(self):
        return self.kind in ("chat", "responses", "embeddings")

    def billed(self, seq, path, status=200):
        u = self.usage
        rec = {"seq": seq, "path": path, "model": self.model, "input": 0, "cached": 0,
               "cache_write": 0, "cache_write_1h": 0, "output": 0, "reasoning": 0,
               "n": self.n,
               "background": self.background, "status": status}
        if status >= 400 or self.kind in ("count_tokens", "moderations"):
            return rec
        if self.kind == "embeddings":
            rec["input"] = u.prompt
        elif self.openai:
            rec.update(input=max(0, u.prompt - u.cached), cached=u.cached,
                       output=u.completion, reasoning=u.reasoning)
        else:
            rec.update(cache_write_1h=u.cache_creation_1h)
            if u.web_search is not None:
                rec["web_search"] = u.web_search
            rec.update(input=u.prompt, cached=u.cached, cache_write=u.cache_creation,
                       output=u.completion, reasoning=u.reasoning)
        return rec


# ---------------------------------------------------------------- state

class State:
    def __init__(self, name="fake", models=None, reply=None, max_records=10000):
        self.name = name
        self.default_models = list(models or DEFAULT_MODELS)
        self.default_reply = reply if reply is not None else DEFAULT_REPLY
        self.lock = threading.Lock()
        self.records = collections.deque(maxlen=max_records)
        self.billed = collections.deque(maxlen=max_records)
        self.seq = itertools.count(1)
        self.conn_seq = itertools.count(1)
        self.total = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.records.clear()
            self.billed.clear()
            self.queue = []
            self.models = list(self.default_models)

    def push(self, spec):
        count = int(spec.pop("count", 1))
        path = spec.pop("path", None)
        controls = {}
        for k, v in spec.items():
            nk = _norm_key(k)
            if nk not in CONTROL_KEYS:
                raise ValueError("unknown control %r" % k)
            controls[nk] = v
        if "usage" in controls and isinstance(controls["usage"], str):
            controls["usage"] = json.loads(controls["usage"])
        with self.lock:
            self.queue.append({"controls": controls, "remaining": count, "path": path})
            return len(self.queue)

    def take(self, path):
        if not self.queue:
            return {}
        with self.lock:
            for i, e in enumerate(self.queue):
                if e["path"] and e["path"] not in path:
                    continue
                if e["remaining"] > 0:
                    e["remaining"] -= 1
                    if e["remaining"] == 0:
                        del self.queue[i]
                return dict(e["controls"])
        return {}

    def record(self, rec):
        with self.lock:
            rec["seq"] = next(self.seq)
            self.total += 1
            self.records.append(rec)
        return rec["seq"]

    def bill(self, rec):
        with self.lock:
            self.billed.append(rec)


# ---------------------------------------------------------------- SSE writer

def _is_output_delta(name, data):
    """An event that carries one generated token (text, reasoning, tool
    arguments): the unit a stream cut short is billed by."""
    if name:
        return name.endswith(".delta") or name == "content_block_delta"
    if not data.startswith("{"):
        return False
    try:
        choices = json.loads(data).get("choices") or []
    except ValueError:
        return False
    return any((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")
               for c in choices if isinstance(c, dict))


class SSEWriter:
    def __init__(self, h, ctl):
        self.h = h
        crlf = ctl.get("crlf", "")
        self.nl = "\r" if crlf == "cr" else "\r\n" if _truthy(crlf) else "\n"
        self.chunk_delay = _int(ctl.get("chunk_delay_ms")) / 1000.0
        self.split = _int(ctl.get("split"))
        self.split_delay = _int(ctl.get("split_delay_ms")) / 1000.0
        self.cut_after = _int(ctl.get("cut_after"))
        self.chunked = h.chunked_ok and not _truthy(ctl.get("no_chunked", ""))
        self.ctype = str(ctl.get("stream_content_type") or "")
        self.events = 0
        self.buf = b""

    def start(self, extra_headers=()):
        self.h.deltas_out = 0
        ctype = self.ctype or "text/event-stream; charset=utf-8"
        hdrs = [("Content-Type", ctype),
                ("Cache-Control", "no-cache")]
        hdrs.extend(extra_headers)
        if self.chunked:
            hdrs.append(("Transfer-Encoding", "chunked"))
        else:
            self.h.close_connection = True
        self.h.write_head(200, hdrs)

    def _send(self, data):
        if not data:
            return
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.h.wfile.write(data)

    def _emit(self, data):
        if self.split > 0:
            self.buf += data
            while len(self.buf) >= self.split:
                piece, self.buf = self.buf[:self.split], self.buf[self.split:]
                self._send(piece)
                if self.split_delay:
                    self.h.sleep(self.split_delay)
        else:
            self._send(data)

    def event(self, name, data):
        if self.events and self.chunk_delay:
            self._send(self.buf)
            self.buf = b""
            self.h.sleep(self.chunk_delay)
        if not isinstance(data, str):
            data = _dumps(data)
        nl = self.nl
        text = ("event: %s%s" % (name, nl) if name else "") + "data: " + data + nl + nl
        self._emit(text.encode("utf-8"))
        self.events += 1
        if _is_output_delta(name, data):
            self.h.deltas_out += 1
        if self.cut_after and self.events >= self.cut_after:
            self._send(self.buf)
            self.buf = b""
            raise _Cut()

    def finish(self):
        self._send(self.buf)
        self.buf = b""
        if self.chunked:
            self.h.wfile.write(b"0\r\n\r\n")


# ---------------------------------------------------------------- handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY on accepted sockets

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.conn_id = next(self.server.state.conn_seq)

    # -- plumbing

    @property
    def chunked_ok(self):
        return self.request_version != "HTTP/1.0"

    def sleep(self, seconds):
        if seconds > 0 and self.server.stop_event.wait(seconds):
            raise _Cut()

    def write_head(self, status, headers):
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = {529: "Overloaded"}.get(status, "Unknown")
        out = ["HTTP/1.1 %d %s" % (status, reason),
               "Date: " + _http_date(),
               "Server: fake-upstream"]
        out.extend("%s: %s" % kv for kv in headers)
        if self.close_connection:
            out.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            out.append("Connection: keep-alive")
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

    def send_body(self, status, body, ctype="application/json", headers=(), split=0,
                  split_delay=0.0):
        if not isinstance(body, (bytes, bytearray)):
            body = _dumps(body).encode("utf-8")
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = {529: "Overloaded"}.get(status, "Unknown")
        out = ["HTTP/1.1 %d %s" % (status, reason),
               "Date: " + _http_date(),
               "Server: fake-upstream",
               "Content-Type: " + ctype,
               "Content-Length: %d" % len(body)]
        out.extend("%s: %s" % kv for kv in headers)
        if self.close_connection:
            out.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            out.append("Connection: keep-alive")
        if self.command == "HEAD":
            body = b""
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body
        if split > 0:
            hlen = len(data) - len(body)
            self.wfile.write(data[:hlen])
            for i in range(0, len(body), split):
                self.wfile.write(body[i:i + split])
                if split_delay:
                    self.sleep(split_delay)
        else:
            self.wfile.write(data)

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        n = self.headers.get("Content-Length")
        if n:
            return self.rfile.read(int(n))
        return b""

    def abort(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- dispatch

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET
    # HEAD is answered as GET is, without the body (RFC 9110 9.3.2).
    do_HEAD = do_GET

    def dispatch(self):
        self.bill_rec, self.deltas_out = None, None
        try:
            self._dispatch()
        except _Cut:
            self.abort()
            self.bill_cut()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
            self.bill_cut()

    def bill_cut(self):
        """A stream whose connection broke stops generating there, as the
        providers do: it is billed the output tokens sent so far."""
        rec = self.bill_rec
        if rec is None or self.deltas_out is None:
            return
        with self.server.state.lock:
            rec["output"] = min(rec["output"], self.deltas_out)
            rec["reasoning"] = min(rec["reasoning"], rec["output"])
            rec["cut"] = True

    def _dispatch(self):
        t0 = time.time()
        state = self.server.state
        u = urlsplit(self.path)
        path, query = u.path, u.query
        body = self.read_body()

        if path.startswith("/__"):
            return self.control(path, query, body)

        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v

        ctl = state.take(path)
        hdr_ctl = {}
        for k, v in headers.items():
            if k.startswith("x-fake-"):
                hdr_ctl[_norm_key(k)] = v
        ctl.update(hdr_ctl)

        seq = state.record({
            "method": self.command,
            "path": path,
            "query": query,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "time": t0,
            "http_version": self.request_version,
            "conn": self.conn_id,
            "controls": ctl,
        })

        anthropic = path.endswith("/messages") or path.endswith("/messages/count_tokens") or (
            path.endswith("/models") or "/models/" in path) and "anthropic-version" in headers
        self.anthropic = anthropic
        rid = _new_id("req_")
        # What the providers send besides: the account, its quota, cookies.
        self.base_headers = [
            ("request-id", rid), ("anthropic-organization-id", "0f1e2d3c-org-fake"),
            ("anthropic-ratelimit-requests-remaining", "3999"),
        ] if anthropic else [
            ("x-request-id", rid), ("openai-processing-ms", "1"), ("openai-version", "2020-10-01"),
            ("openai-organization", "org-fakeuniversity"), ("openai-project", "proj_fake123"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("set-cookie", "__cf_bm=fake; path=/; HttpOnly")]

        if "raw" in ctl:   # a broken provider: these bytes as a 200 JSON answer
            return self.send_body(200, str(ctl["raw"]).encode("utf-8"),
                                  headers=self.base_headers)

        cmd = "GET" if self.command == "HEAD" else self.command
        route = None  # (method, handler, plan kind or None)
        if path.endswith("/chat/completions"):
            route = ("POST", self.chat, "chat")
        elif path.endswith("/embeddings"):
            route = ("POST", self.embeddings, "embeddings")
        elif path.endswith("/responses"):
            route = ("POST", self.responses, "responses")
        elif path.endswith("/messages"):
            route = ("POST", self.messages, "messages")
        elif path.endswith("/messages/count_tokens"):
            route = ("POST", self.count_tokens, "count_tokens")
        elif path.endswith("/moderations"):
            route = ("POST", self.moderations, "moderations")
        elif path.endswith("/images/generations"):
            route = ("POST", self.images, None)
        elif path.endswith("/audio/transcriptions"):
            route = ("POST", self.transcriptions, None)
        elif path.endswith("/audio/speech"):
            route = ("POST", self.speech, None)
        elif path.endswith("/models"):
            route = ("GET", self.models, None)
        elif "/models/" in path:
            route = ("GET", self.model_one, None)

        # Everything that decides the answer, before any of it is sent.
        usage_err = None
        if "usage" in ctl and isinstance(ctl["usage"], str):
            try:
                ctl["usage"] = json.loads(ctl["usage"])
            except ValueError:
                usage_err = "fake_upstream: X-Fake-Usage is not valid JSON"
        status = _int(ctl.get("status"), 200)
        req, parse_err = None, None
        self.raw_body = body
        if cmd == "POST" and path.endswith("/audio/transcriptions"):
            req = {}  # a multipart form: read by the handler
        elif cmd == "POST":
            try:
                req = json.loads(body) if body.strip() else {}
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                parse_err = "We could not parse the JSON body of your request. (%s)" % e
        plan, plan_err = None, None
        if route is not None and route[2] is not None:
            # A model request: bill it now, as the provider would on accepting it.
            bill_status = (400 if usage_err else status if status >= 400 else
                           400 if parse_err else 405 if cmd != route[0] else 200)
            if bill_status == 200:
                try:
                    if route[2] in ("messages", "count_tokens"):
                        _check_betas(req, headers.get("anthropic-beta", ""))
                    plan = Plan(route[2], req, ctl, self.reply_of(ctl))
                except _BadRequest as e:
                    plan_err, bill_status = str(e), 400
            model = req.get("model", "") if isinstance(req, dict) else ""
            rec = (plan or Plan(route[2], {"model": model}, {}, "")).billed(
                seq, path, bill_status)
            state.bill(rec)
            self.bill_rec = rec

        if _truthy(ctl.get("hang", "")):
            self.sleep(HANG_SECONDS)
            raise _Cut()

        if usage_err:
            return self.error(400, usage_err)

        self.split = _int(ctl.get("split"))
        self.split_delay = _int(ctl.get("split_delay_ms")) / 1000.0
        self.sleep(_int(ctl.get("delay_ms")) / 1000.0)

        if status >= 400:
            return self.error(status, retry_after=ctl.get("retry_after"))
        if parse_err:
            return self.error(400, parse_err)
        if route is None:
            return self.error(404, "Invalid URL (%s %s)" % (cmd, path), code="unknown_url")
        if cmd != route[0]:
            return self.error(405, "Invalid method for URL (%s %s)" % (cmd, path))
        if plan_err:
            return self.error(400, plan_err, code=None)
        if req is None:
            return route[1](path, ctl)
        return route[1](req, ctl, plan)

    def error(self, status, message=None, retry_after=None, code=None):
        hdrs = list(self.base_headers)
        if status in (429, 503, 529):
            hdrs.append(("retry-after", str(retry_after if retry_after is not None else 1)))
        if self.anthropic:
            body = anthropic_error(status, message)
        else:
            body = openai_error(status, message, code=code)
        self.send_body(status, body, headers=hdrs)

    def reply_of(self, ctl):
        r = ctl.get("reply")
        return self.server.state.default_reply if r is None else str(r)

    def ok(self, obj):
        self.send_body(200, obj, headers=self.base_headers, split=self.split,
                       split_delay=self.split_delay)

    # -- control API

    def control(self, path, query, body):
        state = self.server.state
        try:
            if path == "/__health":
                return self.send_body(200, {"status": "ok", "name": state.name,
                                            "port": self.server.server_address[1],
                                            "requests": state.total})
            if path == "/__requests" and self.command == "GET":
                with state.lock:
                    recs = list(state.records)
                    if "1" in parse_qs(query).get("clear", []):
                        state.records.clear()
                return self.send_body(200, recs)
            if path == "/__billed" and self.command == "GET":
                with state.lock:
                    recs = list(state.billed)
                    if "1" in parse_qs(query).get("clear", []):
                        state.billed.clear()
                return self.send_body(200, recs)
            if path == "/__reset" and self.command == "POST":
                state.reset()
                return self.send_body(200, {"ok": True})
            if path == "/__control/next" and self.command == "POST":
                spec = json.loads(body or b"{}")
                n = state.push(spec)
                return self.send_body(200, {"ok": True, "queued": n})
            if path == "/__control/models" and self.command == "POST":
                spec = json.loads(body or b"{}")
                with state.lock:
                    state.models = [str(m) for m in spec.get("models", [])]
                return self.send_body(200, {"ok": True, "models": state.models})
        except (ValueError, TypeError, AttributeError) as e:
            return self.send_body(400, {"error": str(e)})
        return self.send_body(404, {"error": "unknown control endpoint %s %s" % (self.command, path)})

    # -- OpenAI chat

    def chat(self, req, ctl, plan):
        model = req.get("model", "")
        usage = plan.usage
        n = plan.n
        cid = _new_id("chatcmpl-")
        created = int(time.time())
        fp = "fp_fake0001"
        finish = "length" if plan.truncated else "tool_calls" if plan.tool else "stop"
        call_ids = [_new_id("call_") for _ in range(n)] if plan.tool else []

        if not req.get("stream"):
            choices = []
            for i in range(n):
                msg = {"role": "assistant", "content": plan.text, "refusal": None,
                       "annotations": []}
                if plan.tool:
                    msg["content"] = None
                    msg["tool_calls"] = [{"id": call_ids[i], "type": "function",
                                          "function": {"name": plan.tool,
                                                       "arguments": plan.args}}]
                choices.append({"index": i, "message": msg, "logprobs": None,
                                "finish_reason": finish})
            return self.ok({
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage.openai_chat(),
                "service_tier": "default",
                "system_fingerprint": fp,
            })

        so = req.get("stream_options") or {}
        include_usage = isinstance(so, dict) and bool(so.get("include_usage"))
        on_choice = include_usage and _truthy(ctl.get("usage_on_choice", ""))
        position = str(ctl.get("usage_position", "last")).lower()

        def chunk(i, delta, finish=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created,
                 "model": model, "service_tier": "default", "system_fingerprint": fp,
                 "choices": [{"index": i, "delta": delta, "logprobs": None,
                              "finish_reason": finish}]}
            if include_usage:
                c["usage"] = None
            return c

        usage_chunk = {"id": cid, "object": "chat.completion.chunk", "created": created,
                       "model": model, "service_tier": "default", "system_fingerprint": fp,
                       "choices": [], "usage": usage.openai_chat()}

        events = []
        for i in range(n):
            first = {"role": "assistant", "content": "", "refusal": None}
            if plan.tool:
                first["content"] = None
                first["tool_calls"] = [{"index": 0, "id": call_ids[i], "type": "function",
                                        "function": {"name": plan.tool, "arguments": ""}}]
            events.append(chunk(i, first))
        pieces = _reply_pieces(plan.args if plan.tool else plan.text)
        content = []
        for p in pieces:  # choices interleaved, piece by piece
            for i in range(n):
                if plan.tool:
                    content.append(chunk(i, {"tool_calls": [{"index": 0,
                                                             "function": {"arguments": p}}]}))
                else:
                    content.append(chunk(i, {"content": p}))
        if include_usage and not on_choice and position == "early":
            content.insert(len(content) - 1, usage_chunk)
        events.extend(content)
        for i in range(n):
            events.append(chunk(i, {}, finish))
        if on_choice:
            events[-1]["usage"] = usage.openai_chat()
        elif include_usage and position not in ("early", "none"):
            events.append(usage_chunk)

        w = SSEWriter(self, ctl)
        w.start(self.base_headers)
        for e in events:
            w.event(None, e)
        w.event(None, "[DONE]")
        w.finish()

    # -- OpenAI embeddings

    def embeddings(self, req, ctl, plan):
        dims = _int(req.get("dimensions"), 8)
        fmt = req.get("encoding_format", "float")
        data = []
        for idx, item in enumerate(plan.items):
            seed = _dumps(item) if isinstance(item, list) else str(item)
            h = hashlib.sha256(seed.encode("utf-8")).digest()
            vec = [round((h[i % 32] - 127.5) / 127.5, 6) for i in range(dims)]
            emb = base64.b64encode(struct.pack("<%df" % dims, *vec)).decode() if fmt == "base64" else vec
            data.append({"object": "embedding", "index": idx, "embedding": emb})
        usage = plan.usage
        self.ok({"object": "list", "data": data, "model": req.get("model", ""),
                 "usage": {"prompt_tokens": usage.prompt, "total_tokens": usage.prompt}})

    # -- models

    def _model_obj(self, mid):
        created = 1700000000 + int(hashlib.md5(mid.encode()).hexdigest()[:6], 16) % 10000000
        if self.anthropic:
            return {"type": "model", "id": mid, "display_name": mid,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))}
        return {"id": mid, "object": "model", "created": created,
                "owned_by": "anthropic" if mid.startswith("claude") else "system"}

    def models(self, path, ctl):
        with self.server.state.lock:
            ids = list(self.server.state.models)
        data = [self._model_obj(m) for m in ids]
        if self.anthropic:
            return self.ok({"data": data, "has_more": False,
                            "first_id": ids[0] if ids else None,
                            "last_id": ids[-1] if ids else None})
        self.ok({"object": "list", "data": data})

    def model_one(self, path, ctl):
        mid = path.split("/models/", 1)[1]
        with self.server.state.lock:
            known = mid in self.server.state.models
        if not known:
            msg = "The model '%s' does not exist" % mid
            if self.anthropic:
                return self.error(404, "model: %s" % mid)
            return self.error(404, msg, code="model_not_found")
        self.ok(self._model_obj(mid))

    # -- OpenAI Responses API

    def responses(self, req, ctl, plan):
        model = req.get("model", "")
        usage = plan.usage
        rid = _new_id("resp_")
        created = int(time.time())
        background = plan.background
        final = "incomplete" if plan.truncated else "completed"

        def resp(status, output, u):
            return {
                "id": rid, "object": "response", "created_at": created, "status": status,
                "background": background, "error": None,
                "incomplete_details": ({"reason": "max_output_tokens"}
                                       if status == "incomplete" else None),
                "instructions": req.get("instructions"),
                "max_output_tokens": req.get("max_output_tokens"),
                "model": model, "output": output, "parallel_tool_calls": True,
                "previous_response_id": req.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default", "store": req.get("store", True),
                "temperature": req.get("temperature", 1.0),
                "text": {"format": {"type": "text"}}, "tool_choice": "auto",
                "tools": req.get("tools") or [],
                "top_p": req.get("top_p", 1.0), "truncation": "disabled",
                "usage": u, "user": None, "metadata": req.get("metadata") or {},
            }

        items = []  # (item when done, item when added)
        if plan.show_reasoning:
            rs = {"id": _new_id("rs_"), "type": "reasoning",
                  "summary": [{"type": "summary_text", "text": plan.reasoning_text}]}
            items.append((rs, dict(rs, summary=[])))
        item_status = "incomplete" if plan.truncated else "completed"
        if plan.tool:
            fc = {"id": _new_id("fc_"), "type": "function_call", "status": item_status,
                  "arguments": plan.args, "call_id": _new_id("call_"), "name": plan.tool}
            items.append((fc, dict(fc, status="in_progress", arguments="")))
        else:
            part_done = {"type": "output_text", "text": plan.text, "annotations": [],
                         "logprobs": []}
            msg = {"id": _new_id("msg_"), "type": "message", "status": item_status,
                   "role": "assistant", "content": [part_done]}
            items.append((msg, dict(msg, status="in_progress", content=[])))
        output = [done for done, _ in items]

        if not req.get("stream"):
            if background:  # accepted; the work goes on (and is billed) out of sight
                return self.ok(resp("queued", [], None))
            return self.ok(resp(final, output, usage.openai_responses()))

        w = SSEWriter(self, ctl)
        w.start(self.base_headers)
        seq = itertools.count(0)

        def ev(typ, **fields):
            d = {"type": typ, "sequence_number": next(seq)}
            d.update(fields)
            w.event(typ, d)

        first = "queued" if background else "in_progress"
        ev("response.created", response=resp(first, [], None))
        ev("response.in_progress", response=resp("in_progress", [], None))
        for oi, (done, added) in enumerate(items):
            iid = done["id"]
            ev("response.output_item.added", output_index=oi, item=added)
            if done["type"] == "reasoning":
                text = plan.reasoning_text
                ev("response.reasoning_summary_part.added", item_id=iid, output_index=oi,
                   summary_index=0, part={"type": "summary_text", "text": ""})
                for p in _reply_pieces(text) if text else []:
                    ev("response.reasoning_summary_text.delta", item_id=iid,
                       output_index=oi, summary_index=0, delta=p)
                ev("response.reasoning_summary_text.done", item_id=iid, output_index=oi,
                   summary_index=0, text=text)
                ev("response.reasoning_summary_part.done", item_id=iid, output_index=oi,
                   summary_index=0, part={"type": "summary_text", "text": text})
            elif done["type"] == "function_call":
                for p in _reply_pieces(plan.args):
                    ev("response.function_call_arguments.delta", item_id=iid,
                       output_index=oi, delta=p)
                ev("response.function_call_arguments.done", item_id=iid, output_index=oi,
                   name=plan.tool, arguments=plan.args)
            else:
                part_done = done["content"][0]
                ev("response.content_part.added", item_id=iid, output_index=oi,
                   content_index=0,
                   part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
                for p in _reply_pieces(plan.text):
                    ev("response.output_text.delta", item_id=iid, output_index=oi,
                       content_index=0, delta=p, logprobs=[])
                ev("response.output_text.done", item_id=iid, output_index=oi,
                   content_index=0, text=plan.text, logprobs=[])
                ev("response.content_part.done", item_id=iid, output_index=oi,
                   content_index=0, part=part_done)
            ev("response.output_item.done", output_index=oi, item=done)
        ev("response." + final, response=resp(final, output, usage.openai_responses()))
        w.finish()

    # -- Anthropic

    def count_tokens(self, req, ctl, plan):
        self.ok({"input_tokens": plan.usage.prompt})

    # -- OpenAI moderation

    def moderations(self, req, ctl, plan):
        results = []
        for text, image in plan.items:
            violent = "kill" in text.lower().split()
            scores = {c: 0.0001 for c in MODERATION_CATEGORIES}
            if violent:
                scores["violence"] = 0.91
            results.append({
                "flagged": violent,
                "categories": {c: scores[c] > 0.5 for c in MODERATION_CATEGORIES},
                "category_scores": scores,
                "category_applied_input_types": {
                    c: (["text", "image"] if image and c in MODERATION_IMAGE_CATEGORIES
                        else ["text"]) for c in MODERATION_CATEGORIES},
            })
        self.ok({"id": _new_id("modr-"), "model": plan.model, "results": results})

    # -- images and audio (OpenAI's wire formats)

    def images(self, req, ctl, plan):
        if ctl.get("raw") is not None:   # X-Fake-Raw: the body as given
            return self.send_body(200, str(ctl["raw"]).encode(), headers=self.base_headers)
        n = _int(ctl.get("images"), _int(req.get("n"), 1))
        fmt = req.get("response_format") or "url"
        size = _int(ctl.get("b64_bytes"), 96)
        data = []
        for i in range(n):
            item = {"revised_prompt": str(req.get("prompt", ""))}
            if fmt == "b64_json":
                item["b64_json"] = base64.b64encode(b"\x89PNG" + b"\0" * size).decode()[:size]
            else:
                item["url"] = "https://images.example/%s.png" % _new_id("img-")
            data.append(item)
        self.ok({"created": int(time.time()), "data": data})

    def _form(self):
        import email.parser
        import email.policy
        head = "Content-Type: %s\r\n\r\n" % self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            head.encode("latin-1") + self.raw_body)
        fields, files = {}, {}
        for part in msg.iter_parts() if msg.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[name] = payload
            else:
                fields[name] = payload.decode("utf-8", "replace")
        return fields, files

    def transcriptions(self, req, ctl, plan):
        fields, files = self._form()
        if "file" not in files or not fields.get("model"):
            return self.error(400, "file and model are required")
        audio = files["file"]
        duration = float(ctl.get("duration") or 0) or 1.0
        if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and not ctl.get("duration"):
            rate = struct.unpack("<I", audio[28:32])[0]
            data = audio.find(b"data")
            if rate and data > 0:
                duration = struct.unpack("<I", audio[data + 4:data + 8])[0] / float(rate)
        text = "A fake transcription."
        usage = {"type": "duration", "seconds": int(math.ceil(duration))}
        fmt = fields.get("response_format") or "json"
        def stamp(t, sep):
            return "%02d:%02d:%02d%s%03d" % (t // 3600, t % 3600 // 60, int(t) % 60, sep,
                                             int(t * 1000) % 1000)
        if fmt == "text":
            return self.send_body(200, (text + "\n").encode(), "text/plain; charset=utf-8",
                                  headers=self.base_headers)
        if fmt == "srt":
            return self.send_body(200, ("1\n%s --> %s\n%s\n\n" % (
                stamp(0, ","), stamp(duration, ","), text)).encode(),
                "text/plain; charset=utf-8", headers=self.base_headers)
        if fmt == "vtt":
            return self.send_body(200, ("WEBVTT\n\n%s --> %s\n%s\n\n" % (
                stamp(0, "."), stamp(duration, "."), text)).encode(),
                "text/plain; charset=utf-8", headers=self.base_headers)
        out = {"text": text}
        if fmt == "verbose_json":
            out = {"task": "transcribe", "language": "english", "duration": duration,
                   "text": text, "segments": [{"id": 0, "start": 0.0, "end": duration,
                                               "text": text}]}
        if not _truthy(ctl.get("no_usage", "")):
            out["usage"] = usage
        self.ok(out)

    def speech(self, req, ctl, plan):
        types = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
        fmt = req.get("response_format") or "mp3"
        if not isinstance(req.get("input"), str) or fmt not in types:
            return self.error(400, "input and a known response_format are required")
        n = _int(ctl.get("audio_bytes"), 64 * len(req["input"]))
        audio = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        self.send_body(200, audio, types[fmt], headers=self.base_headers,
                       split=self.split or 4096)

    def messages(self, req, ctl, plan):
        model = req.get("model", "")
        usage = plan.usage
        mid = _new_id("msg_")
        stop = "max_tokens" if plan.truncated else "tool_use" if plan.tool else "end_turn"
        signature = base64.b64encode(hashlib.sha256(mid.encode()).digest()).decode()
        blocks = []
        for i in range(plan.searches):
            tid = _new_id("srvtoolu_")
            blocks.append({"type": "server_tool_use", "id": tid, "name": "web_search",
                           "input": {"query": "query %d" % (i + 1)}})
            blocks.append({"type": "web_search_tool_result", "tool_use_id": tid,
                           "content": [{"type": "web_search_result", "title": "r",
                                        "url": "https://example.com/%d" % (i + 1),
                                        "encrypted_content": "e", "page_age": None}]})
        if plan.show_reasoning:
            blocks.append({"type": "thinking", "thinking": plan.reasoning_text,
                           "signature": signature})
        if plan.tool:
            blocks.append({"type": "tool_use", "id": _new_id("toolu_"), "name": plan.tool,
                           "input": json.loads(plan.args)})
        else:
            blocks.append({"type": "text", "text": plan.text})
        if not req.get("stream"):
            return self.ok({
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": blocks,
                "stop_reason": stop, "stop_sequence": None,
                "usage": usage.anthropic(),
            })
        w = SSEWriter(self, ctl)
        w.start(self.base_headers)
        w.event("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage.anthropic(output_tokens=1)}})

        def delta(i, d):
            w.event("content_block_delta", {"type": "content_block_delta", "index": i,
                                            "delta": d})

        for i, b in enumerate(blocks):
            if b["type"] in ("server_tool_use", "web_search_tool_result"):
                start = dict(b, input={}) if b["type"] == "server_tool_use" else b
            elif b["type"] == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
            elif b["type"] == "tool_use":
                start = dict(b, input={})
            else:
                start = {"type": "text", "text": ""}
            w.event("content_block_start", {"type": "content_block_start", "index": i,
                                            "content_block": start})
            if i == 0:
                w.event("ping", {"type": "ping"})
            if b["type"] == "thinking":
                for p in _reply_pieces(b["thinking"]) if b["thinking"] else []:
                    delta(i, {"type": "thinking_delta", "thinking": p})
                delta(i, {"type": "signature_delta", "signature": signature})
            elif b["type"] == "server_tool_use":
                delta(i, {"type": "input_json_delta", "partial_json": _dumps(b["input"])})
            elif b["type"] == "web_search_tool_result":
                pass
            elif b["type"] == "tool_use":
                for p in _reply_pieces(plan.args):
                    delta(i, {"type": "input_json_delta", "partial_json": p})
            else:
                for p in _reply_pieces(b["text"]):
                    delta(i, {"type": "text_delta", "text": p})
            w.event("content_block_stop", {"type": "content_block_stop", "index": i})
        w.event("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": stop, "stop_sequence": None},
                                  # running totals, without the breakdown
                                  # of cache writes by duration, as Anthropic
                                  "usage": usage._anthropic()})
        w.event("message_stop", {"type": "message_stop"})
        w.finish()


# ---------------------------------------------------------------- server

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, state):
        self.state = state
        self.stop_event = threading.Event()
        super().__init__(addr, Handler)

    def stop(self):
        self.stop_event.set()
        self.shutdown()
        self.server_close()


def start(port=0, host="127.0.0.1", name="fake", models=None, reply=None, max_records=10000):
    """Start in a background thread; returns (server, port).  server.stop() ends it."""
    server = Server((host, port), State(name, models, reply, max_records))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="fake-upstream-%s" % name, daemon=True)
    t.start()
    return server, server.server_address[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake OpenAI/Anthropic upstream")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="fake")
    ap.add_argument("--models", help="comma-separated model ids for GET /v1/models")
    ap.add_argument("--reply", help="reply text (default %r)" % DEFAULT_REPLY)
    ap.add_argument("--max-records", type=int, default=10000)
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m] if a.models else None
    server = Server((a.host, a.port), State(a.name, models, a.reply, a.max_records))
    sys.stdout.write("READY %d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop_event.set()
        server.server_close()


if __name__ == "__main__":
    main()
