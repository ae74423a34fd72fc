"""A fake Slack Web API on 127.0.0.1, for tests that drive a real `slack_sdk.WebClient`.

    with FakeSlack(token="xoxb-test") as slack:
        client = WebClient(token="xoxb-test", base_url=slack.url)
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.calls_to("chat.postMessage")[0].params["text"] == "hi"

Besides the Web API under `/api/`, it serves the upload URLs that
`files.getUploadURLExternal` hands out (`/upload/v1/<file id>`) and `response_url`
targets (`/responses/<key>`). Unknown channels and users are answered with plausible
made-up objects; register specific ones with `add_channel()` / `add_user()`.
"""

from __future__ import annotations

import json
import mimetypes
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Callable
from urllib.parse import parse_qs

from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response

__all__ = ["FakeSlack", "ResponsePost", "SlackCall", "UploadedFile"]

TEAM_ID = "T0FAKETEAM"
BOT_USER_ID = "U0FAKEBOT1"
BOT_ID = "B0FAKEBOT1"
APP_ID = "A0FAKEAPP1"
FIRST_TS_SECONDS = 1_700_000_000
WORKSPACE_URL = "https://fake-workspace.slack.com/"

JSON_PARAMS = frozenset({"blocks", "attachments", "view", "files", "metadata"})
"""Params that clients send as JSON strings in form bodies; `SlackCall.params` decodes them."""

METHOD_SCOPES: dict[str, frozenset[str]] = {
    "auth.test": frozenset(),
    "chat.postMessage": frozenset({"chat:write"}),  # and chat:write.public for a public channel not joined
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "views.publish": frozenset(),
    "conversations.info": frozenset({"channels:read"}),  # groups:read for a private one
    "conversations.history": frozenset({"channels:history"}),  # groups:history for a private one
    "conversations.join": frozenset({"channels:join"}),
    "conversations.members": frozenset({"channels:read"}),  # groups:read for a private one
    "users.info": frozenset({"users:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
}
"""The bot scopes each Web API method needs, as Slack's method reference lists them."""


@dataclass(frozen=True)
class SlackCall:
    """One Web API call: the method, its params (query, form, multipart or JSON) and headers."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    http_method: str = "POST"

    @property
    def token(self) -> str | None:
        """The token sent as `Authorization: Bearer ...` or as a `token` param."""
        auth = next((v for k, v in self.headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        value = self.params.get("token")
        return str(value) if value else None

    @classmethod
    def from_request(cls, request: RecordedRequest) -> SlackCall:
        """Parse a request to `/api/<method>`."""
        method = request.path.removeprefix("/api/")
        return cls(method, parse_params(request), request.headers, request.method)


@dataclass(frozen=True)
class ResponsePost:
    """One post to a `response_url` made by `FakeSlack.response_url(key)`."""

    key: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class UploadedFile:
    """A file announced by `files.getUploadURLExternal`, its bytes, and where it was shared."""

    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None
    title: str | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)
    initial_comment: str | None = None
    thread_ts: str | None = None


class FakeSlack(FakeHTTPServer):
    """A fake Slack Web API. Pass `url` as `base_url` to `slack_sdk.WebClient`.

    `token`: the only token accepted (None accepts any non-empty token).
    `scopes`: the bot scopes the token was granted; a call needing another is refused with
    `missing_scope` and Slack's `needed`/`provided` fields (None grants everything).
    Set `invalid_token` to an error such as "invalid_auth" or "token_revoked" to make
    every Web API call fail with it. Faults: `fail_next(method, status=429,
    retry_after=1)`, `fail_next(method, error="not_in_channel")` (HTTP 200, ok: false),
    `fail_next(method, status=500)`, `refuse(method, error)` (every call, until
    `clear_faults()`), `set_latency(4, method)` (a slow Slack), `set_down()`, and the base
    class's others.
    """

    def __init__(self, *, token: str | None = None, scopes: set[str] | None = None) -> None:
        super().__init__()
        self.token = token
        self.scopes = frozenset(scopes) if scopes is not None else None
        self.invalid_token: str | None = None
        self.files: dict[str, UploadedFile] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._file_shares: dict[tuple[str, str], dict[str, Any]] = {}  # in history, not in `messages`
        self._channels: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._deleted: set[str] = set()
        self._counter = 0
        self._last_ts_micros = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.publish": self._views_publish,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.join": self._conversations_join,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # -- what tests read -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Web API base URL, `http://127.0.0.1:PORT/api/`."""
        return f"{self.origin}/api/"

    @property
    def calls(self) -> list[SlackCall]:
        """Every Web API call received, oldest first, including those answered by a fault."""
        return [SlackCall.from_request(r) for r in self.requests if r.path.startswith("/api/")]

    def calls_to(self, method: str) -> list[SlackCall]:
        """The calls to one Web API method, e.g. "chat.postMessage"."""
        return [c for c in self.calls if c.method == method]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Messages as they stand now (after `chat.update`), in posting order."""
        with self._lock:
            return [dict(m) for m in self._messages.values()]

    def response_url(self, key: str = "response") -> str:
        """A `response_url` on this fake; posts to it show up in `response_posts`."""
        return f"{self.origin}/responses/{key}"

    @property
    def response_posts(self) -> list[ResponsePost]:
        """Every post to a `response_url`, oldest first."""
        return [
            ResponsePost(r.path.removeprefix("/responses/"), parse_params(r), r.headers)
            for r in self.requests
            if r.path.startswith("/responses/")
        ]

    # -- what tests set --------------------------------------------------------------

    def add_channel(self, channel_id: str, **fields: Any) -> None:
        """Register a channel; `fields` override the made-up conversation object.

        `is_member=False`: the bot is not in it. As in Slack, a public channel then takes posts
        (chat:write.public) but refuses its history (not_in_channel) until conversations.join;
        a private one (`is_private=True`) refuses posts with not_in_channel and its history
        with channel_not_found, and cannot be joined. `is_archived=True` refuses posts and
        joins with is_archived.
        `members=[user ids]` is what conversations.members lists.
        """
        with self._lock:
            self._channels[channel_id] = {**self._made_up_channel(channel_id), **fields}

    def add_user(self, user_id: str, **fields: Any) -> None:
        """Register a user; `fields` (e.g. tz="Europe/Paris", is_admin=True) override the made-up one."""
        with self._lock:
            self._users[user_id] = {**self._made_up_user(user_id), **fields}

    def delete_channel(self, channel_id: str) -> None:
        """Make the channel gone: every method naming it answers channel_not_found."""
        with self._lock:
            self._deleted.add(channel_id)

    def is_member(self, channel_id: str) -> bool:
        """Whether the bot is in the channel (made-up channels: yes)."""
        with self._lock:
            return bool((self._channels.get(channel_id) or {"is_member": True}).get("is_member"))

    def refuse(self, method: str, error: str) -> None:
        """Answer every call to `method` with `error` (HTTP 200, ok: false) until `clear_faults()`."""
        self.fail_next(method, error=error, times=1_000_000)

    def set_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        """Set the members `usergroups.users.list` reports for a user group."""
        with self._lock:
            self._usergroups[usergroup_id] = list(user_ids)

    # -- serving ---------------------------------------------------------------------

    def target_path(self, target: str) -> str:
        """Fault targets are Web API method names, or paths when they start with "/"."""
        return target if target.startswith("/") else f"/api/{target}"

    def error_response(
        self, status: int | None, error: str | None, retry_after: int | None
    ) -> Response:
        """Slack's envelope: HTTP 200 with ok: false for API errors; 429 carries Retry-After."""
        status = (200 if error else 500) if status is None else status
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(1 if retry_after is None else retry_after)
        elif retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        default = {429: "ratelimited", 503: "service_unavailable"}.get(status, "internal_error")
        return Response.json({"ok": False, "error": error or default}, status, headers)

    def handle(self, request: RecordedRequest) -> Response:
        if request.path.startswith("/api/"):
            return self._web_api(SlackCall.from_request(request))
        if request.path.startswith("/upload/v1/"):
            return self._upload(request.path.removeprefix("/upload/v1/"), request.body)
        if request.path.startswith("/responses/") and request.method == "POST":
            return Response.text("ok")
        return Response.text("Not Found", 404)

    def _web_api(self, call: SlackCall) -> Response:
        auth_error = self._auth_error(call.token)
        if auth_error:
            return Response.json({"ok": False, "error": auth_error})
        method = self._methods.get(call.method)
        if method is None:
            return Response.json({"ok": False, "error": "unknown_method", "req_method": call.method})
        if str(call.params.get("channel") or call.params.get("channel_id") or "") in self._deleted:
            return Response.json({"ok": False, "error": "channel_not_found"})
        missing = self._missing_scope(call)
        if missing:
            return Response.json({"ok": False, "error": "missing_scope", "needed": missing,
                                  "provided": ",".join(sorted(self.scopes or ()))})
        return Response.json(method(call.params))

    def _missing_scope(self, call: SlackCall) -> str | None:
        """The scope this call needs and the token lacks, if any."""
        if self.scopes is None:
            return None
        needed = set(METHOD_SCOPES.get(call.method, ()))
        channel = self._channels.get(str(call.params.get("channel") or ""))
        private = channel is not None and bool(channel.get("is_private"))
        if call.method == "conversations.history" and private:
            needed = {"groups:history"}
        if call.method == "chat.postMessage" and channel is not None and not private and channel.get("is_member") is False:
            needed.add("chat:write.public")
        return next((scope for scope in sorted(needed) if scope not in self.scopes), None)

    def _auth_error(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if self.invalid_token:
            return self.invalid_token
        if self.token is not None and token != self.token:
            return "invalid_auth"
        return None

    def _upload(self, file_id: str, data: bytes) -> Response:
        upload = self.files.get(file_id)
        if upload is None:
            return Response.text("Not Found", 404)
        upload.data = data
        return Response.text(f"OK - {len(data)}")

    # -- Web API methods -------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": WORKSPACE_URL,
            "team": "Fake Workspace",
            "user": "budget-guard",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, error = self._postable_channel(params)
        error = error or _content_error(params)
        if error:
            return _error(error)
        ts = self._next_ts()
        message = self._message(params, ts)
        self._messages[(channel, ts)] = {**message, "channel": channel}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(params.get("channel") or ""), str(params.get("ts") or "")
        stored = self._messages.get((channel, ts))
        if stored is None:
            return _error("message_not_found" if channel else "channel_not_found")
        error = _content_error(params)
        if error:
            return _error(error)
        # As documented: omitted blocks/attachments are kept, an empty list removes them.
        stored["text"] = params.get("text") or ""
        for key in ("blocks", "attachments"):
            if params.get(key):
                stored[key] = params[key]
            elif key in params and params[key] is not None:
                stored.pop(key, None)
        stored["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        text = stored.get("text", "")
        message = {k: v for k, v in stored.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": ts, "text": text, "message": message}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        _, error = self._postable_channel(params)
        if not error and not params.get("user"):
            error = "user_not_found"
        error = error or _content_error(params)
        return _error(error) if error else {"ok": True, "message_ts": self._next_ts()}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id, view = params.get("user_id"), params.get("view")
        if not user_id:
            return _error("invalid_arguments")
        if not isinstance(view, dict) or view.get("type") != "home":
            return _error("invalid_arguments")
        if _blocks_error(view.get("blocks") or [], max_blocks=100):
            return _error("invalid_blocks")
        view_id = f"V{self._next_number():010d}"
        published = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "home",
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{FIRST_TS_SECONDS}.{view_id}",
            "title": view.get("title"),
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        self.home_views[str(user_id)] = published
        return {"ok": True, "view": published}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return _error("channel_not_found")
        channel = self._channels.get(channel_id) or self._made_up_channel(channel_id)
        return {"ok": True, "channel": channel}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Newest first; `oldest`/`latest` bound the ts; metadata only with include_all_metadata."""
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return _error("channel_not_found")
        known = self._channels.get(channel_id)
        if known is not None and known.get("is_member") is False:
            return _error("channel_not_found" if known.get("is_private") else "not_in_channel")
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        limit = int(params.get("limit") or 100)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in {"1", "true"}
        with self._lock:
            found = [dict(m) for (channel, ts), m in [*self._messages.items(), *self._file_shares.items()]
                     if channel == channel_id and oldest < float(ts) <= latest]
        found.sort(key=lambda m: float(m["ts"]), reverse=True)
        for message in found:
            message.pop("channel", None)
            if not with_metadata:
                message.pop("metadata", None)
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        """Public channels only; joining one the bot is in answers ok with a warning, as Slack does."""
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return _error("channel_not_found")
        channel = self._channels.get(channel_id) or self._made_up_channel(channel_id)
        if channel.get("is_archived"):
            return _error("is_archived")
        if channel.get("is_private") or channel.get("is_im") or channel.get("is_mpim"):
            return _error("method_not_supported_for_channel_type")
        already = bool(channel.get("is_member"))
        self._channels[channel_id] = {**channel, "is_member": True}
        answer: dict[str, Any] = {"ok": True, "channel": self._channels[channel_id]}
        if already:
            answer.update(warning="already_in_channel", response_metadata={"warnings": ["already_in_channel"]})
        return answer

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """The `members` a test gave `add_channel` (none otherwise), `limit` a page, cursor-paged."""
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return _error("channel_not_found")
        members = list((self._channels.get(channel_id) or {}).get("members") or [])
        start = int(str(params.get("cursor") or "0").removeprefix("members_") or 0)
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        page = members[start:start + limit]
        more = start + limit < len(members)
        return {"ok": True, "members": page,
                "response_metadata": {"next_cursor": f"members_{start + limit}" if more else ""}}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if not user_id:
            return _error("user_not_found")
        return {"ok": True, "user": self._users.get(user_id) or self._made_up_user(user_id)}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        members = self._usergroups.get(str(params.get("usergroup") or ""))
        return _error("no_such_subteam") if members is None else {"ok": True, "users": members}

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = params.get("filename"), params.get("length")
        if not filename or length in (None, ""):
            return _error("invalid_arguments")
        file_id = f"F{self._next_number():010d}"
        self.files[file_id] = UploadedFile(
            id=file_id, filename=str(filename), length=int(length), alt_txt=params.get("alt_txt")
        )
        return {"ok": True, "upload_url": f"{self.origin}/upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            return _error("invalid_arguments")
        uploads = [self.files.get(str(entry.get("id"))) for entry in entries]
        if any(u is None or u.data is None for u in uploads):
            return _error("file_not_found")
        channels = [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("channel_id"):
            channels.insert(0, str(params["channel_id"]))
        shared = []
        for entry, upload in zip(entries, uploads):
            assert upload is not None
            upload.title = entry.get("title") or upload.filename
            upload.completed = True
            upload.channels = channels
            upload.initial_comment = params.get("initial_comment")
            upload.thread_ts = params.get("thread_ts")
            shared.append(self._file_object(upload))
        for channel in channels:  # as Slack does, the share shows in the channel's history
            ts = self._next_ts()
            message = self._message({"text": params.get("initial_comment") or "",
                                     "thread_ts": params.get("thread_ts")}, ts)
            self._file_shares[(channel, ts)] = {**message, "files": shared, "upload": True, "channel": channel}
        return {"ok": True, "files": shared}

    # -- helpers ---------------------------------------------------------------------

    def _postable_channel(self, params: dict[str, Any]) -> tuple[str, str | None]:
        """The channel a post lands in (a DM for a user ID), or the error Slack would give."""
        channel = str(params.get("channel") or "")
        if not channel:
            return channel, "channel_not_found"
        known = self._channels.get(channel)
        if known is not None and known.get("is_archived"):
            return channel, "is_archived"
        if known is not None and known.get("is_member") is False and known.get("is_private"):
            return channel, "not_in_channel"  # a public channel takes the post: chat:write.public
        if channel[0] in "UW":
            channel = "D" + channel[1:]
        return channel, None

    def _message(self, params: dict[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": params.get("text") or "",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if params.get(key):
                message[key] = params[key]
        return message

    def _file_object(self, upload: UploadedFile) -> dict[str, Any]:
        mimetype = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        filetype = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else "binary"
        base = f"https://files.fake-workspace.slack.com/files-pri/{TEAM_ID}-{upload.id}"
        created = FIRST_TS_SECONDS + self._next_number()
        return {
            "id": upload.id,
            "created": created,
            "timestamp": created,
            "name": upload.filename,
            "title": upload.title,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": BOT_USER_ID,
            "user_team": TEAM_ID,
            "editable": False,
            "size": len(upload.data or b""),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(c.startswith("C") for c in upload.channels),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{upload.filename}",
            "url_private_download": f"{base}/download/{upload.filename}",
            "permalink": f"{WORKSPACE_URL}files/{BOT_USER_ID}/{upload.id}/{upload.filename}",
            "alt_txt": upload.alt_txt,
            "comments_count": 0,
            "channels": [c for c in upload.channels if c.startswith("C")],
            "groups": [c for c in upload.channels if c.startswith("G")],
            "ims": [c for c in upload.channels if c.startswith("D")],
            "has_rich_preview": False,
            "file_access": "visible",
        }

    def _made_up_channel(self, channel_id: str) -> dict[str, Any]:
        return {
            "id": channel_id,
            "name": f"channel-{channel_id.lower()}",
            "is_channel": channel_id.startswith("C"),
            "is_group": channel_id.startswith("G"),
            "is_im": channel_id.startswith("D"),
            "is_private": not channel_id.startswith("C"),
            "is_archived": False,
            "is_general": False,
            "is_member": True,
            "is_ext_shared": False,
            "is_org_shared": False,
            "created": FIRST_TS_SECONDS,
            "creator": "U0FAKEOWNR",
            "context_team_id": TEAM_ID,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }

    def _made_up_user(self, user_id: str) -> dict[str, Any]:
        name = f"user-{user_id.lower()}"
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": name.title(),
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": FIRST_TS_SECONDS,
            "profile": {
                "real_name": name.title(),
                "display_name": name,
                "email": f"{name}@example.com",
                "team": TEAM_ID,
            },
        }

    def _next_number(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _next_ts(self) -> str:
        """Message timestamps like Slack's: the posting time, "1764000000.000100"-shaped, unique and increasing."""
        with self._lock:
            micros = max(int(time.time() * 1_000_000), self._last_ts_micros + 100)
            self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def parse_params(request: RecordedRequest) -> dict[str, Any]:
    """Merge query, form, multipart and JSON params; JSON strings in `JSON_PARAMS` are decoded."""
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    content_type = (request.header("Content-Type") or "").lower()
    if "json" in content_type and request.body:
        body = request.json()
        params.update(body if isinstance(body, dict) else {"_body": body})
    elif "multipart/form-data" in content_type:
        params.update(_multipart(request.header("Content-Type") or "", request.body))
    elif request.body:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        params.update({k: v[-1] for k, v in form.items()})
    for key in JSON_PARAMS & params.keys():
        if isinstance(params[key], str) and params[key][:1] in "[{":
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                pass
    return params


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload if part.get_filename() else payload.decode("utf-8", "replace")
    return fields


def _error(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


def _content_error(params: dict[str, Any]) -> str | None:
    """The error Slack gives for a message without content or with broken blocks."""
    blocks = params.get("blocks") or []
    if not (params.get("text") or blocks or params.get("attachments")):
        return "no_text"
    if len(str(params.get("text") or "")) > 40_000:
        return "msg_too_long"
    return "invalid_blocks" if _blocks_error(blocks, max_blocks=50) else None


def _blocks_error(blocks: Any, *, max_blocks: int) -> bool:
    """Whether `blocks` break Block Kit's limits on count, header and section text."""
    if not isinstance(blocks, list) or len(blocks) > max_blocks:
        return True
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            return True
        text = (block.get("text") or {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if block["type"] == "header" and len(text) > 150:
            return True
        if block["type"] == "section":
            fields = block.get("fields") or []
            if len(text) > 3000 or len(fields) > 10:
                return True
            if any(len(f.get("text", "")) > 2000 for f in fields if isinstance(f, dict)):
                return True
    return False
