"""The ledger's C tests (t/unit/ledger_tests.c) against the session's
store: reserve, settle, sweep, rate limit, listings, admin writes, the
writer thread. Built with ASan and UBSan by Makefile.apxs."""
import os
import re
import secrets
import subprocess

from conftest import ROOT, schema_apply

BINARY = os.path.join(ROOT, "build", "ledger-tests")


def test_ledger_against_the_store(store, record_property):
    proc = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "build/ledger-tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = "ledger_c_" + secrets.token_hex(4)
    schema_apply.apply(store.uri, db)
    env = dict(os.environ,
               ASAN_OPTIONS="abort_on_error=1:detect_leaks=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    try:
        proc = subprocess.run([BINARY, store.uri, db], cwd=ROOT, capture_output=True,
                              text=True, env=env, timeout=300)
    finally:
        store.client().drop_database(db)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1])
    assert m, proc.stdout + proc.stderr
    assert int(m.group(1)) > 0, proc.stdout
    assert m.group(2) == "0", proc.stdout + proc.stderr
    assert "runtime error" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record_property("ledger_checks", int(m.group(1)))
