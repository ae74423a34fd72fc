"""What the README and the Dockerfile tell an operator is what the code does: the push example
works as pasted into a shell today and `usage` then shows it; both say the same about
`serve --upgrade-db` with replicas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest

from bot.cli import main
from bot.server import create_server
from jobs.config.context import Context
from jobs.config.settings import Settings
from tests.conftest import REPO
from tests.harness import ServerThread

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")


def push_example() -> tuple[str, str, str]:
    """The README's curl example: its bearer token, the body as a shell expands it, and the comment after it."""
    block = re.search(r"```sh\n(curl -X POST http://localhost:3000/v1/usage.*?)```", README, re.S)
    assert block, "the README has no push example"
    text = block.group(1)
    token = re.search(r"Bearer (\w+)", text).group(1)  # type: ignore[union-attr]
    argument = re.search(r"--data-binary (.+)\n", text).group(1)  # type: ignore[union-attr]
    shell = shutil.which("bash") or shutil.which("sh")
    assert shell is not None
    body = subprocess.run([shell, "-c", f"printf '%s' {argument}"], capture_output=True, text=True, check=True).stdout
    return token, body, text


@pytest.fixture
def app_settings(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    token, _, _ = push_example()
    monkeypatch.setenv("DATABASE_URL", database_url)
    return Settings(database_url=database_url, ingest_tokens=f"search={token}")


def test_the_push_example_is_accepted_now_and_usage_shows_it(context: Context,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    token, body, text = push_example()
    with ServerThread(create_server(context, None)) as server:
        answer = httpx.post(f"{server.url}/v1/usage", content=body, timeout=10,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200
    assert f"# {json.dumps(answer.json())}" in text  # the answer the README shows
    assert main(["usage"]) == 0  # this month, as of now: the example is dated now
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("meta-llama/Llama-3.3-70B-Instruct-Turbo"))
    shown = re.search(r"budget-guard usage +# this month: ([\d,]+) tokens of (\S+), (\$[\d.]+)", text)
    assert shown, "the README says what `usage` shows"
    tokens, model, cost = shown.groups()
    assert row.split()[0] == model and cost in row.split()
    assert sum(int(cell.replace(",", "")) for cell in row.split()[1:4:2]) == int(tokens.replace(",", ""))


def test_readme_and_dockerfile_agree_that_replicas_may_all_start_with_upgrade_db() -> None:
    lines = DOCKERFILE.splitlines()
    cmd = lines.index('CMD ["budget-guard", "serve", "--upgrade-db"]')
    start = cmd
    while lines[start - 1].startswith("#"):
        start -= 1
    comment = " ".join(line.lstrip("# ") for line in lines[start:cmd])
    replicas = README[README.index("### With PostgreSQL and replicas"):README.index("## Configuration")]
    for text in (comment, " ".join(replicas.split())):
        assert "serve --upgrade-db" in text and "advisory lock" in text and "one at a time" in text, text
