"""The App Home tab, built when a user opens it: acknowledged at once, then published (a lazy
listener), since a big ledger can take longer than Slack's three seconds to sum. Admins also
see the operator notices still open; when one is raised with no OPS_CHANNEL, every admin's tab
is published again so it shows at once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.admins import AdminDirectory
from bot.listeners.lazy import ack_at_once, ack_first
from bot.views.home import home_error_view, home_view
from jobs.config.context import Context
from jobs.digest.overview import build_overview
from jobs.runtime.operator_notices import open_notices

log = logging.getLogger(__name__)


def _view(context: Context, with_notices: bool) -> dict[str, Any]:
    notices: list[str] = []
    if with_notices:
        with context.sessions() as session:
            notices = [n.text for n in open_notices(session)]
    try:
        return home_view(build_overview(context), notices=notices)
    except Exception:
        log.exception("App Home could not be built")
        return home_error_view(notices=notices)


def admin_home_publisher(context: Context, admins: AdminDirectory) -> Callable[[WebClient], int]:
    """Publishes every known admin's Home tab (with the open notices); returns how many it reached."""

    def publish(client: WebClient) -> int:
        users = admins.admin_users()
        if not users:
            return 0
        view = _view(context, with_notices=True)
        for user in users:
            client.views_publish(user_id=user, view=view)
        return len(users)

    return publish


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    def publish(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return  # the Messages tab, or an event without a user
        client.views_publish(user_id=event["user"], view=_view(context, admins.is_admin(event["user"]) is True))

    ack_first(app.event("app_home_opened"), publish)


def register_other_events(app: App) -> None:
    """Any other event the app is sent gets its 200 at once, so Slack does not retry it. Registered
    last: Bolt runs the first listener that matches."""
    app.event(re.compile(".*"))(ack_at_once)
