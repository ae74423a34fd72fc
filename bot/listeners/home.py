"""The App Home tab, built when a user opens it: acknowledge at once, then publish the view
(a lazy listener), since a big ledger can take longer than Slack's three seconds to sum."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.views.home import home_error_view, home_view
from jobs.context import Context
from jobs.digest import build_overview

log = logging.getLogger(__name__)


def register(app: App, context: Context) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    def publish(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return  # the Messages tab, or an event without a user
        try:
            view = home_view(build_overview(context))
        except Exception:
            log.exception("App Home for %s could not be built", event.get("user"))
            view = home_error_view()
        client.views_publish(user_id=event["user"], view=view)

    app.event("app_home_opened")(ack=acknowledge, lazy=[publish])
