"""The harness's error-log check (conftest.py): which lines fail a test,
and that a gateway's declared lines pass once, for the test that declared
them."""
import re

import httpx

from conftest import log_problems
from helpers import auth

LINES = """\
[Fri Dec 04 10:00:00.000001 2026] [aiproxy:debug] [pid 1:tid 2] AIP01999: chatty
[Fri Dec 04 10:00:00.000002 2026] [mpm_event:notice] [pid 1:tid 1] AH00489: Apache configured
[Fri Dec 04 10:00:00.000003 2026] [aiproxy:warn] [pid 1:tid 2] AIP01310: provider openai key #1 is failing
[Fri Dec 04 10:00:00.000004 2026] [aiproxy:error] [pid 1:tid 2] AIP01101: usage store unavailable
[Fri Dec 04 10:00:00.000005 2026] [core:emerg] [pid 1] AH00020: something broke
[Fri Dec 04 10:00:00.000006 2026] [ssl:warn] [pid 1:tid 1] AH01882: Init: this version of mod_ssl was compiled against a newer library (x)
a line that is no log record at all
"""


def test_levels_warn_and_above_fail_unless_tolerated():
    bad = log_problems(LINES, [])
    assert [re.search(r"A[HI]P?\d+", l).group(0) for l in bad] == \
        ["AIP01310", "AIP01101", "AH00020"]


def test_expected_lines_pass():
    bad = log_problems(LINES, [re.compile("AIP01310"), re.compile("AIP01101")])
    assert len(bad) == 1 and "AH00020" in bad[0]


def fail_once(g, up):
    up.next(status=500, count=10)
    r = httpx.post(g.url("/openai/v1/chat/completions"), headers=auth("lc@example.com"),
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                   timeout=30)
    assert r.status_code >= 500


def test_a_gateway_declaration_holds_for_one_check(make_gateway, up):
    """A fresh gateway's first provider failure logs AIP01310: undeclared,
    the check reports it; declared, the check passes it and forgets the
    declaration."""
    g = make_gateway(loglevel="warn").start()
    fail_once(g, up)
    bad = g.check_log()
    assert len(bad) == 1 and "AIP01310" in bad[0], bad

    g = make_gateway(loglevel="warn").start()
    g.expect_log(r"AIP01310")
    fail_once(g, up)
    assert g.check_log() == []
    assert g.log_expected_now == []
    with open(g.var + "/error.log") as f:
        assert "AIP01310" in f.read()
