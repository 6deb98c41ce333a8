"""The README's Quick start examples run exactly as written (against a
test gateway instead of 127.0.0.1:8080, with a token of the test's own)."""
import os
import re
import subprocess

from conftest import ROOT, make_token


def quick_start_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("\n## Quick start\n", 1)[1].split("\n### Install\n", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [b for b in blocks if "AIPROXY_TOKEN" in b]


def test_quick_start_examples_run_as_written(gateway, upstream):
    blocks = quick_start_blocks()
    assert len(blocks) == 2, blocks     # curl, then the SDK
    host = gateway.base[len("http://"):]
    env = dict(os.environ, AIPROXY_TOKEN=make_token("quickstart@example.com"))
    for block in blocks:
        assert "127.0.0.1:8080" in block
        script = "\n".join(line for line in block.replace("127.0.0.1:8080", host).splitlines()
                           if not line.startswith("export AIPROXY_TOKEN=..."))
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (block, p.stdout, p.stderr)
        assert p.stdout.strip(), block
    assert gateway.db().months.find_one({"email": "quickstart@example.com"})["requests"] == 2
