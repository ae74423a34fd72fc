"""Where the CLI's database is: `--help` says the default, a missing schema names the database
(password hidden), and a failed check leaves no empty SQLite file behind."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from bot.cli import build_parser, main
from tests.conftest import PG_URL

UPGRADE = "run `budget-guard db upgrade`"


def commands_with_a_database_option() -> list[tuple[str, ...]]:
    """Every sub-command (and `db` action) that takes --database-url."""
    found = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif "--database-url" in action.option_strings:
                found.append(path)

    walk(build_parser(), ())
    return found


def test_every_database_url_option_says_the_default_and_where_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    commands = commands_with_a_database_option()
    assert {("usage",), ("serve",), ("digest",), ("db", "upgrade"), ("db", "check")} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "--database-url URL" in help_text
        assert "else sqlite:///budget-guard.db: a file in the current folder" in help_text, command


@pytest.mark.parametrize("command, code", [(["usage"], 2), (["db", "check"], 1)])
def test_no_schema_names_the_default_database_and_creates_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   command: list[str], code: int) -> None:
    assert Path.cwd() == tmp_path  # conftest runs each test in its own empty folder, with no DATABASE_URL
    assert main(command) == code
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"the database sqlite:///budget-guard.db ({tmp_path / 'budget-guard.db'}) has no schema" in line
    assert line.endswith(UPGRADE)
    assert list(tmp_path.iterdir()) == []  # the check did not create budget-guard.db


def test_an_existing_empty_sqlite_file_is_named_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "elsewhere.db"
    empty.touch()
    assert main(["usage", "--database-url", f"sqlite:///{empty}"]) == 2
    assert f"the database sqlite:///{empty} has no schema; {UPGRADE}" in capsys.readouterr().err
    assert empty.exists()


@pytest.mark.skipif(not PG_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_a_postgresql_url_is_named_without_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    """The server trusts local connections, so the password is not checked; it must still not be printed."""
    empty_schema = f"t_missing_{uuid.uuid4().hex[:8]}"  # never created: no tables, no schema
    url = make_url(PG_URL).set(password="hunter2").update_query_dict({"options": f"-csearch_path={empty_schema}"})
    assert main(["usage", "--database-url", url.render_as_string(hide_password=False)]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert f"the database {url.render_as_string(hide_password=True)} has no schema; {UPGRADE}" in err
    assert ":***@" in err
