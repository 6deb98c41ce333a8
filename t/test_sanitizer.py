"""The ASan/UBSan run (AIPROXY_SANITIZE=1) sees a report from inside httpd:
a probe module with deliberate errors (t/sanitizer/probe.c) is loaded
beside mod_aiproxy, and each error must reach sanitizer_reports()."""
import os
import re
import subprocess
import time

import pytest

from conftest import BUILD, SANITIZE, SANITIZER_IGNORED, is_httpd_crash, \
    sanitizer_reports

pytestmark = pytest.mark.skipif(not SANITIZE, reason="AIPROXY_SANITIZE=1 only")

PROBE = "LoadModule sanitizer_probe_module %s\n" % os.path.join(
    BUILD, "mod_sanitizer_probe.so")


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def provoke(make_gateway, what):
    """Asks the probe for one error, stops httpd; the new reports (taken,
    so the check after the test does not fail on them) from its directory."""
    gw = make_gateway(PROBE).start()
    # The child dies mid-request: curl fails, which is the point.
    subprocess.run(["curl", "-sS", "--max-time", "10", gw.url("/sanitizer-probe/" + what)],
                   capture_output=True)
    # Stopping httpd while the child still writes its stack would cut it.
    deadline = time.time() + 10
    while time.time() < deadline and not any(
            re.search(r"^\s*#1 ", read(os.path.join(gw.var, f)), re.M)
            for f in os.listdir(gw.var) if f.startswith(("asan.", "error.log"))):
        time.sleep(0.1)
    gw.stop()
    return [text for path, text in sanitizer_reports() if path.startswith(gw.var)]


def test_heap_overflow_fails(make_gateway):
    reports = provoke(make_gateway, "overflow")
    assert len(reports) == 1, reports
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in reports[0]
    assert "probe.c:" in reports[0]  # symbolized, with file and line


def test_undefined_behaviour_fails(make_gateway):
    reports = provoke(make_gateway, "undefined")
    assert len(reports) == 1, reports
    assert "runtime error: signed integer overflow" in reports[0]
    assert "in probe_post_read_request" in reports[0]  # with its stack


def test_crash_outside_module_noted(make_gateway):
    """A SEGV with no mod_aiproxy frame is taken for httpd's own crash at
    child exit: noted, not failed."""
    before = len(SANITIZER_IGNORED)
    assert provoke(make_gateway, "segv") == []
    assert len(SANITIZER_IGNORED) == before + 1
    assert "AddressSanitizer: SEGV" in read(SANITIZER_IGNORED[-1])


def test_crash_in_module_fails():
    report = ("==7==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000\n"
              "    #0 0x7f0 in apr_table_get (/lib/libapr-1.so.0+0x1)\n"
              "    #1 0x7f1 in aiproxy_route_find /src/mod_aiproxy/aiproxy_route.c:9\n")
    assert not is_httpd_crash(report)
    assert not is_httpd_crash(report.splitlines()[0])  # stack cut short
    assert is_httpd_crash(report.replace("aiproxy_route_find /src/mod_aiproxy/",
                                         "listener_thread /build/server/mpm/event/")
                                  .replace("aiproxy_route.c", "event.c"))
