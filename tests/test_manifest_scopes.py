"""manifest.yaml asks for exactly the bot scopes the code uses, each with its reason.

The Web API methods are read from the code itself (every `WebClient` method it calls, plus the
auth.test Bolt makes at start-up); the scopes each needs are Slack's, as the fake Slack knows
them. The end-to-end tests in test_slack_acks.py run against a fake granting only these scopes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from slack_sdk import WebClient

from tests.fakes.slack_api import METHOD_SCOPES

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "manifest.yaml"
BOLT_CALLS = {"auth.test"}  # Bolt checks the token when the app is built
# Scopes a method needs in the cases the code meets beyond its base scope.
CASES = {
    "chat.postMessage": {"chat:write.public"},  # a public channel the bot could not join first
    "conversations.history": {"groups:history"},  # a private channel the bot was invited to
    "conversations.members": {"groups:read"},  # an alert posted in a private channel
}
CLIENT_METHODS = {name for name in dir(WebClient) if re.match(r"^[a-z]+_[A-Za-z_]+$", name)} - {"api_call"}


def manifest_scopes() -> set[str]:
    return set(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])


def web_api_methods_called() -> set[str]:
    """Every Web API method the shipped code calls through a WebClient, as Slack names it."""
    called = set()
    for package in ("bot", "jobs", "db", "pricing"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in CLIENT_METHODS:
                    called.add(node.func.attr.replace("_", "."))
    return called


def test_the_manifest_asks_for_exactly_the_scopes_the_code_uses() -> None:
    called = web_api_methods_called() | BOLT_CALLS
    assert called - METHOD_SCOPES.keys() == set(), "add the new method's scopes to METHOD_SCOPES in the fake"
    assert {"chat.postMessage", "chat.update", "views.publish", "conversations.join", "conversations.history",
            "usergroups.users.list", "files.getUploadURLExternal", "files.completeUploadExternal"} <= called
    needed = {"commands"} if yaml.safe_load(MANIFEST.read_text())["features"].get("slash_commands") else set()
    for method in called:
        needed |= METHOD_SCOPES[method] | CASES.get(method, set())
    assert manifest_scopes() == needed
    assert "users:read" not in manifest_scopes()  # nothing reads users


def test_every_scope_says_why() -> None:
    lines = MANIFEST.read_text().splitlines()
    start = lines.index("    bot:")
    scope_lines = []
    for line in lines[start + 1:]:
        if not line.startswith("      - "):
            break
        scope_lines.append(line)
    assert len(scope_lines) == len(manifest_scopes())
    for line in scope_lines:
        scope, _, reason = line.removeprefix("      - ").partition("#")
        assert scope.strip() in manifest_scopes() and len(reason.strip()) > 10, line
