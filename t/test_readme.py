"""The README's Quick start examples run exactly as written (against a
test gateway instead of 127.0.0.1:8080, with a token of the test's own)."""
import os
import re
import subprocess

from conftest import BUILD, ROOT, TOKEN_SECRET, make_token


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


def api_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("\n## API\n", 1)[1].split("\n## Fuzzing\n", 1)[0]
    return [b for b in re.findall(r"```sh\n(.*?)```", section, re.S)
            if "127.0.0.1:8080/openai/v1/chat" in b or "ADMIN_TOKEN=" in b]


def test_api_examples_run(gateway, tmp_path):
    """The chat completion with curl, and the admin token then /usage, on
    tools/run's defaults mapped to the test gateway's store, database and
    secret."""
    blocks = api_blocks()
    assert len(blocks) == 2, blocks
    secret = tmp_path / "token-secret"
    secret.write_text(TOKEN_SECRET)
    env = dict(os.environ, AIPROXY_TOKEN=make_token("api-example@example.com"))
    for block in blocks:
        script = (block.replace("127.0.0.1:8080", gateway.base[len("http://"):])
                  .replace("mongodb://127.0.0.1:27018", gateway.store.uri)
                  .replace("AIPROXY_DB=aiproxy", "AIPROXY_DB=" + gateway.db_name)
                  .replace("var/token-secret", str(secret))
                  .replace("build/aiproxy-admin", os.path.join(BUILD, "aiproxy-admin")))
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (block, p.stdout, p.stderr)
        assert ("200 OK" in p.stdout) or ('"data":' in p.stdout), (block, p.stdout)
