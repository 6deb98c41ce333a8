"""The C unit tests and the fuzz corpus replays, built with ASan and UBSan
by Makefile.apxs; no server needed."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
FUZZERS = ("token", "request", "sse", "google", "directives", "path", "params", "jscan",
           "multipart", "xlate")
BINARIES = ["unit_tests"] + ["fuzz_replay_" + f for f in FUZZERS]

# A sanitizer report fails the run: ASan aborts by itself, UBSan only when
# told to.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}


@pytest.fixture(scope="module", autouse=True)
def built():
    """Builds the tests once; make rebuilds whatever is out of date."""
    proc = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "tests"],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in BINARIES:
        assert os.access(os.path.join(BUILD, name), os.X_OK), name


def run(args, halt_on_ub=True):
    env = dict(os.environ)
    env.update(SANITIZER_ENV)
    if not halt_on_ub:
        # Every check still runs; a UBSan report is caught in its output.
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def test_unit_tests(record_property):
    proc = run([os.path.join(BUILD, "unit_tests")], halt_on_ub=False)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1])
    assert m, proc.stdout
    assert int(m.group(1)) > 0, proc.stdout
    assert m.group(2) == "0", proc.stdout + proc.stderr
    assert "runtime error" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record_property("unit_checks", int(m.group(1)))   # for the run's summary


@pytest.mark.parametrize("name", FUZZERS)
def test_fuzz_corpus_replays(name, record_property):
    corpus = os.path.join(ROOT, "t", "fuzz", "corpus", name)
    seeds = [f for f in os.listdir(corpus) if not f.startswith(".")]
    assert seeds, corpus
    proc = run([os.path.join(BUILD, "fuzz_replay_" + name), corpus])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runtime error" not in proc.stderr, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == \
        "replayed %d inputs" % len(seeds), proc.stdout
    record_property("fuzz_inputs", len(seeds))


# Each fuzz target runs a few seconds in every test run, from its corpus,
# so a regression the fuzzer finds quickly blocks landing. A failing input
# is written into the target's corpus (replayed from then on by the test
# above); longer campaigns: README, "Fuzzing".
FUZZ_SECONDS = int(os.environ.get("AIPROXY_FUZZ_SECONDS", "5"))


@pytest.fixture(scope="module")
def fuzz_built():
    assert shutil.which("clang"), "clang is installed by tools/setup.sh"
    proc = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "fuzz-build"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", FUZZERS)
def test_fuzz_briefly(fuzz_built, name, tmp_path, record_property):
    corpus = os.path.join(ROOT, "t", "fuzz", "corpus", name)
    proc = run([os.path.join(BUILD, "fuzz_" + name),
                "-max_total_time=%d" % FUZZ_SECONDS, "-print_final_stats=1",
                "-artifact_prefix=" + os.path.join(corpus, "failed-"),
                str(tmp_path), corpus])
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
    assert runs and int(runs.group(1)) > 0, proc.stderr[-2000:]
    record_property("fuzz_execs", int(runs.group(1)))
