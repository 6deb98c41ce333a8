"""The test run ends with one line per part that ran (C units, fuzz corpus
replays, fuzz runs, integration), so a reader of tools/test's output sees
which parts ran and how, not only dots."""
import os
import re
import subprocess
import sys

from conftest import ROOT


def test_run_names_each_part_and_its_counts():
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly",
                        "t/test_c_units.py", "t/test_config.py", "-k",
                        "unit_tests or (corpus_replays and sse) or six_decimals"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ))
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    tail = out[out.index("what ran"):]
    units = re.search(r"^C units: (\d+) checks passed$", tail, re.M)
    assert units and int(units.group(1)) > 100, tail
    corpus = len([f for f in os.listdir(os.path.join(ROOT, "t/fuzz/corpus/sse"))
                  if not f.startswith(".")])
    assert re.search(r"^fuzz replay: 1 passed, %d inputs replayed under ASan/UBSan$" % corpus,
                     tail, re.M), tail
    assert re.search(r"^fuzz runs: not run$", tail, re.M), tail
    assert re.search(r"^integration: 1 passed$", tail, re.M), tail
