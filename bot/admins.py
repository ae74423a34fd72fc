"""Who may change budgets: users named in ADMINS, and members of the user groups named there.

Group members are read from Slack (usergroups.users.list) by a background thread every
ADMIN_REFRESH_SECONDS, so a command never waits on Slack for them. Until a group has been read
once, whether someone in no read group is an admin is unknown (None): the command says it is
checking and answers once `refresh` has read the groups."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

log = logging.getLogger(__name__)
UNKNOWN_GROUP_ERRORS = ("no_such_subteam", "subteam_not_found")


class GroupReadError(Exception):
    """A user group could not be read; the message says why, in words for the person asking."""


class AdminDirectory:
    """ADMINS, with the members of its user groups kept warm in the background."""

    def __init__(self, admins: Iterable[str], client: WebClient, *, refresh_seconds: float = 300.0) -> None:
        admins = list(admins)
        self.users = frozenset(a for a in admins if not a.startswith("S"))
        self.groups = tuple(a for a in admins if a.startswith("S"))
        self._client = client
        self._refresh_seconds = refresh_seconds
        self._members: dict[str, frozenset[str]] = {}
        self._reading = threading.Lock()  # one read of the groups at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_admin(self, user: str) -> bool | None:
        """True or False from what is known now; None while a group the user might be in is unread."""
        if user in self.users:
            return True
        members = dict(self._members)
        if any(user in found for found in members.values()):
            return True
        return None if any(group not in members for group in self.groups) else False

    def confirm(self, user: str) -> bool:
        """Whether `user` is an admin, reading unread groups first when that decides it. Blocks on
        Slack, so only for work after an ack; raises GroupReadError when a needed group is unreadable."""
        known = self.is_admin(user)
        if known is None:
            self.refresh(unless_known=user)
            known = self.is_admin(user)
        return bool(known)

    def admin_users(self) -> list[str]:
        """Every admin known by ID: the users named, and the members of the groups read so far."""
        known = set(self.users)
        for members in dict(self._members).values():
            known |= members
        return sorted(known)

    def refresh(self, *, unless_known: str | None = None) -> None:
        """Read every group now (blocking: the background thread, or a command that had to wait;
        with `unless_known`, nothing is read if a read under way settled that user's answer).
        Raises GroupReadError naming the groups that could not be read; the others still are."""
        problems = []
        with self._reading:
            if unless_known is not None and self.is_admin(unless_known) is not None:
                return
            for group in self.groups:
                try:
                    members = self._client.usergroups_users_list(usergroup=group).get("users") or []
                except SlackApiError as exc:
                    error = exc.response.get("error") if exc.response is not None else "error"
                    if error in UNKNOWN_GROUP_ERRORS:  # a wrong ID in ADMINS: nobody is in it
                        log.warning("ADMINS names user group %s, which Slack does not know", group)
                        members = []
                    else:
                        log.warning("cannot read user group %s: %s", group, error)
                        problems.append(f"Slack refused to list user group {group} (`{error}`)")
                        continue
                except (SlackRequestError, OSError, TimeoutError) as exc:
                    log.warning("cannot read user group %s: %s", group, type(exc).__name__)
                    problems.append(f"Slack did not answer when I listed user group {group}")
                    continue
                self._members[group] = frozenset(str(m) for m in members)
        if problems:
            raise GroupReadError("; ".join(problems))

    def start(self) -> "AdminDirectory":
        """Keep the groups warm: read them now and every `refresh_seconds`, in a daemon thread."""
        if self.groups and self._thread is None:
            self._thread = threading.Thread(target=self._keep_warm, name="admin-groups", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _keep_warm(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except GroupReadError:
                pass  # logged; the next round tries again, and what was known stays known
            except Exception:
                log.exception("reading the admin user groups failed")
            self._stop.wait(self._refresh_seconds)
