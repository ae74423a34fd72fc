"""The fake APIs answer what the real ones (and the specs in shared/specs) say they answer."""

from __future__ import annotations

import json
import re
import time
import urllib.error
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.conftest import SHARED, needs_shared
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.fakes.slack_api import FakeSlack
from tests.fakes.together_api import Endpoint, FakeTogether, Hardware, TogetherModel

SPECS = SHARED / "specs"
TOKEN = "xoxb-fake-token"
DAY = 86_400
NOV_1 = 1_730_419_200  # 2024-11-01T00:00:00Z


# -- fake Slack ----------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.url)


def test_slack_url_is_a_web_api_base_url(slack: FakeSlack) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", slack.url)


def test_files_upload_v2_goes_through_all_three_steps(slack: FakeSlack, client: WebClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    result = client.files_upload_v2(
        channel="C0COSTS", file=png, filename="chart.png", title="Spend this month", initial_comment="Digest"
    )

    paths = [r.path for r in slack.requests]
    file_id = result["file"]["id"]
    assert paths == [
        "/api/files.getUploadURLExternal",
        f"/upload/v1/{file_id}",
        "/api/files.completeUploadExternal",
    ]
    announced = slack.calls_to("files.getUploadURLExternal")[0].params
    assert announced["filename"] == "chart.png" and int(announced["length"]) == len(png)
    uploaded = slack.files[file_id]
    assert uploaded.data == png and uploaded.completed
    assert uploaded.title == "Spend this month" and uploaded.channels == ["C0COSTS"]
    assert uploaded.initial_comment == "Digest"
    assert result["file"]["mimetype"] == "image/png" and result["file"]["size"] == len(png)
    assert result["files"][0]["channels"] == ["C0COSTS"]


def test_complete_upload_without_the_bytes_fails(slack: FakeSlack, client: WebClient) -> None:
    ticket = client.files_getUploadURLExternal(filename="a.png", length=3)
    assert ticket["upload_url"].startswith(slack.origin + "/upload/")
    with pytest.raises(SlackApiError) as raised:
        client.files_completeUploadExternal(files=[{"id": ticket["file_id"], "title": "a"}])
    assert raised.value.response["error"] == "file_not_found"


def test_post_message_returns_increasing_ts_and_records_the_call(slack: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*$12,000*/month"}}]
    first = client.chat_postMessage(channel="C0COSTS", text="$12,000/month", blocks=blocks)
    second = client.chat_postMessage(channel="C0COSTS", text="again", thread_ts=first["ts"])

    assert abs(float(first["ts"]) - time.time()) < 60  # the posting time, as Slack's are
    assert float(second["ts"]) > float(first["ts"])
    assert first["channel"] == "C0COSTS" and first["message"]["text"] == "$12,000/month"
    assert first["message"]["blocks"] == blocks and second["message"]["thread_ts"] == first["ts"]
    call = slack.calls_to("chat.postMessage")[0]
    assert call.params["blocks"] == blocks and call.params["channel"] == "C0COSTS"
    assert call.headers["Authorization"] == f"Bearer {TOKEN}" and call.token == TOKEN


def test_form_encoded_params_are_parsed_and_json_fields_decoded(slack: FakeSlack) -> None:
    response = httpx.post(
        slack.url + "chat.postMessage",
        data={"token": TOKEN, "channel": "C1", "text": "hi", "blocks": '[{"type": "divider"}]'},
    )
    assert response.json()["ok"] is True
    call = slack.calls_to("chat.postMessage")[0]
    assert call.params["blocks"] == [{"type": "divider"}] and call.token == TOKEN


def test_update_ephemeral_and_lookups_answer_like_slack(slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="draft")
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="final")
    assert updated["ts"] == posted["ts"] and updated["text"] == "final"
    assert slack.messages[0]["text"] == "final"
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert raised.value.response["error"] == "message_not_found"

    assert client.chat_postEphemeral(channel="C1", user="U1", text="only you")["message_ts"]
    slack.add_user("U2", tz="Europe/Paris", is_admin=True)
    user = client.users_info(user="U2")["user"]
    assert (user["id"], user["tz"], user["is_admin"]) == ("U2", "Europe/Paris", True)
    assert client.conversations_info(channel="C1")["channel"]["id"] == "C1"
    slack.set_usergroup("S1", ["U1", "U2"])
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    view = client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["view"]
    assert view["type"] == "home" and slack.home_views["U1"]["id"] == view["id"]


def test_channel_membership_and_block_limits_are_enforced(slack: FakeSlack, client: WebClient) -> None:
    slack.add_channel("C0OUT", is_member=False, is_private=True)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0OUT", text="hi")
    assert raised.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as raised:
        client.conversations_history(channel="C0OUT")
    assert raised.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as raised:
        client.conversations_join(channel="C0OUT")
    assert raised.value.response["error"] == "method_not_supported_for_channel_type"
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="x", blocks=[{"type": "divider"}] * 51)
    assert raised.value.response["error"] == "invalid_blocks"


def test_a_public_channel_takes_posts_but_shows_history_only_to_members(slack: FakeSlack, client: WebClient) -> None:
    slack.add_channel("C0PUBLIC", is_member=False)
    assert client.chat_postMessage(channel="C0PUBLIC", text="via chat:write.public")["ok"]
    with pytest.raises(SlackApiError) as raised:
        client.conversations_history(channel="C0PUBLIC")
    assert raised.value.response["error"] == "not_in_channel"
    joined = client.conversations_join(channel="C0PUBLIC")
    assert joined["channel"]["is_member"] and "warning" not in joined.data and slack.is_member("C0PUBLIC")
    assert client.conversations_join(channel="C0PUBLIC")["warning"] == "already_in_channel"
    assert [m["text"] for m in client.conversations_history(channel="C0PUBLIC")["messages"]] == ["via chat:write.public"]


def test_scopes_are_enforced_as_slack_does(client: WebClient) -> None:
    with FakeSlack(token=TOKEN, scopes={"chat:write"}) as slack:
        scoped = WebClient(token=TOKEN, base_url=slack.url)
        assert scoped.chat_postMessage(channel="C1", text="fine")["ok"]
        slack.add_channel("C0PUBLIC", is_member=False)
        with pytest.raises(SlackApiError) as raised:
            scoped.chat_postMessage(channel="C0PUBLIC", text="not joined")
        assert (raised.value.response["error"], raised.value.response["needed"]) == ("missing_scope", "chat:write.public")
        with pytest.raises(SlackApiError) as raised:
            scoped.usergroups_users_list(usergroup="S1")
        assert raised.value.response["needed"] == "usergroups:read"
        assert scoped.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]  # needs no scope


def test_a_slow_slack_answers_late_and_a_refusing_one_refuses_until_cleared(slack: FakeSlack) -> None:
    client = WebClient(token=TOKEN, base_url=slack.url, timeout=5)
    slack.set_latency(0.5, "chat.update")
    slack.refuse("chat.postMessage", "is_archived")
    started = time.monotonic()
    with pytest.raises(SlackApiError):
        client.chat_update(channel="C1", ts="1.0", text="x")
    assert time.monotonic() - started >= 0.5
    assert slack.calls_to("chat.update")[0].params["text"] == "x"  # recorded when it arrived
    for _ in range(3):
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="C1", text="x")
        assert raised.value.response["error"] == "is_archived"
    started = time.monotonic()
    assert client.auth_test()["ok"] and time.monotonic() - started < 0.5  # other methods are not slowed
    slack.clear_faults()
    assert client.chat_postMessage(channel="C1", text="x")["ok"]


def test_rate_limit_raises_with_retry_after(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")

    response = raised.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]


def test_rate_limit_is_retried_by_a_retry_handler(slack: FakeSlack) -> None:
    retry = RateLimitErrorRetryHandler(max_retry_count=1)
    client = WebClient(token=TOKEN, base_url=slack.url, retry_handlers=[retry])
    slack.fail_next("chat.postMessage", status=429, retry_after=0)

    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_api_errors_and_server_errors(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", error="not_in_channel")
    slack.fail_next("chat.postMessage", status=500)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 200 and raised.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 500
    assert client.auth_test()["ok"], "faults target only their method"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]


def test_tokens_are_checked(slack: FakeSlack, client: WebClient) -> None:
    assert client.auth_test()["user_id"]
    for token, error in [("xoxb-other", "invalid_auth"), (None, "not_authed")]:
        with pytest.raises(SlackApiError) as raised:
            WebClient(token=token, base_url=slack.url).auth_test()
        assert raised.value.response["error"] == error
    slack.invalid_token = "token_revoked"
    with pytest.raises(SlackApiError) as raised:
        client.auth_test()
    assert raised.value.response["error"] == "token_revoked"


def test_slack_down_then_back(slack: FakeSlack, client: WebClient) -> None:
    slack.set_down()
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 503

    slack.set_down(status=None)
    no_retries = WebClient(token=TOKEN, base_url=slack.url, retry_handlers=[])
    with pytest.raises(urllib.error.URLError):
        no_retries.chat_postMessage(channel="C1", text="hi")

    slack.set_down(False)
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]


def test_response_url_posts_are_recorded(slack: FakeSlack) -> None:
    url = slack.response_url("abc")

    response = WebhookClient(url).send(text="Quoted", response_type="ephemeral")

    assert response.status_code == 200
    [post] = slack.response_posts
    assert post.key == "abc" and post.payload == {"text": "Quoted", "response_type": "ephemeral"}


# -- fake OpenAI usage ---------------------------------------------------------------


@pytest.fixture
def usage() -> Iterator[FakeOpenAIUsage]:
    events = [
        UsageEvent(NOV_1 + 3600 * h + 5, "gpt-4o-mini", input_tokens=1000, output_tokens=100,
                   project_id="proj_a")
        for h in range(30)
    ]
    events += [
        UsageEvent(NOV_1 + 60, "gpt-4o", input_tokens=500, input_cached_tokens=200, output_tokens=50,
                   project_id="proj_b", batch=True, num_model_requests=2),
    ]
    with FakeOpenAIUsage(admin_key="sk-admin", events=events, clock=lambda: NOV_1 + 7 * DAY) as fake:
        yield fake


def get_usage(fake: FakeOpenAIUsage, *, key: str = "sk-admin", **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(fake.completions_url, params=params, headers=headers, timeout=5)


def test_paging_walks_every_bucket_once(usage: FakeOpenAIUsage) -> None:
    params: dict[str, Any] = {"start_time": NOV_1, "end_time": NOV_1 + 2 * DAY, "bucket_width": "1h"}
    buckets, pages = [], 0
    while True:
        page = get_usage(usage, **params).json()
        pages += 1
        assert page["object"] == "page"
        buckets += page["data"]
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        assert page["next_page"].startswith("page_")
        params["page"] = page["next_page"]

    assert pages == 2 and len(buckets) == 48  # 1h buckets page 24 at a time by default
    assert [b["start_time"] for b in buckets] == list(range(NOV_1, NOV_1 + 2 * DAY, 3600))
    assert all(b["object"] == "bucket" and b["end_time"] - b["start_time"] == 3600 for b in buckets)
    assert sum(r["input_tokens"] for b in buckets for r in b["results"]) == 30 * 1000 + 500
    assert buckets[40]["results"] == []  # empty hours are still buckets


def test_buckets_group_and_filter(usage: FakeOpenAIUsage) -> None:
    brackets: dict[str, Any] = {"group_by[]": ["model", "batch"]}  # how OpenAI's SDK sends arrays
    page = get_usage(usage, start_time=NOV_1, limit=1, **brackets).json()
    results = page["data"][0]["results"]
    assert [(r["model"], r["batch"], r["project_id"]) for r in results] == [
        ("gpt-4o", True, None),
        ("gpt-4o-mini", False, None),
    ]
    batch = results[0]
    assert batch["object"] == "organization.usage.completions.result"
    assert batch["input_tokens"] == 500 and batch["input_cached_tokens"] == 200
    assert batch["input_uncached_tokens"] == 300
    assert batch["num_model_requests"] == 2 and results[1]["input_tokens"] == 24 * 1000

    only_b = get_usage(usage, start_time=NOV_1, limit=1, project_ids=["proj_b"], batch="true").json()
    [total] = only_b["data"][0]["results"]
    assert total["input_tokens"] == 500 and total["model"] is None


@needs_shared("specs/openai-usage-costs.yaml")
def test_results_carry_every_field_the_spec_lists(usage: FakeOpenAIUsage) -> None:
    spec = (SPECS / "openai-usage-costs.yaml").read_text()
    schema = spec.split("    UsageCompletionsResult:")[1].split("      required:")[0]
    spec_fields = set(re.findall(r"^        (\w+):$", schema, re.MULTILINE))

    result = get_usage(usage, start_time=NOV_1, limit=1).json()["data"][0]["results"][0]

    assert set(result) == spec_fields


def get_costs(fake: FakeOpenAIUsage, **params: Any) -> httpx.Response:
    return httpx.get(f"{fake.origin}/v1/organization/costs", params=params,
                     headers={"Authorization": "Bearer sk-admin"}, timeout=5)


def test_costs_price_the_usage_per_line_item_in_daily_pages(usage: FakeOpenAIUsage) -> None:
    usage.prices = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
                    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10"))}
    usage.extra_costs = [(NOV_1 + 100, "web search tool calls", Decimal("0.25"))]
    page = get_costs(usage, start_time=NOV_1, end_time=NOV_1 + 2 * DAY, group_by=["line_item"], limit=1).json()
    assert page["object"] == "page" and page["has_more"] and page["next_page"]
    [bucket] = page["data"]
    assert (bucket["start_time"], bucket["end_time"]) == (NOV_1, NOV_1 + DAY)
    items = {r["line_item"]: r for r in bucket["results"]}
    assert set(items) == {"gpt-4o, input", "gpt-4o, cached input", "gpt-4o, output", "gpt-4o-mini, input",
                          "gpt-4o-mini, output", "web search tool calls"}
    assert items["gpt-4o, cached input"]["quantity"] == 200 and items["gpt-4o, cached input"]["quantity_unit"] == "tokens"
    assert items["gpt-4o-mini, input"]["amount"] == {"value": 24 * 1000 * 0.15 / 1e6, "currency": "usd"}
    second = get_costs(usage, start_time=NOV_1, end_time=NOV_1 + 2 * DAY, group_by=["line_item"], limit=1,
                       page=page["next_page"]).json()
    assert not second["has_more"] and second["next_page"] is None
    [total] = get_costs(usage, start_time=NOV_1, limit=1).json()["data"][0]["results"]
    assert total["line_item"] is None and total["amount"]["value"] == pytest.approx(
        sum(r["amount"]["value"] for r in bucket["results"]))
    assert get_costs(usage, start_time=NOV_1, bucket_width="1h").status_code == 400  # only 1d, says the spec
    assert get_costs(usage, start_time=NOV_1, limit=181).status_code == 400
    assert get_costs(usage, start_time=NOV_1, group_by=["model"]).status_code == 400


@needs_shared("specs/openai-usage-costs.yaml")
def test_costs_results_carry_every_field_the_spec_lists(usage: FakeOpenAIUsage) -> None:
    spec = (SPECS / "openai-usage-costs.yaml").read_text()
    schema = spec.split("    CostsResult:")[1].split("      required:")[0]
    spec_fields = set(re.findall(r"^        (\w+):$", schema, re.MULTILINE))
    usage.prices = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))}
    result = get_costs(usage, start_time=NOV_1, group_by=["line_item"]).json()["data"][0]["results"][0]
    assert set(result) == spec_fields


def test_default_and_maximum_limits(usage: FakeOpenAIUsage) -> None:
    assert len(get_usage(usage, start_time=NOV_1).json()["data"]) == 7  # 1d default
    too_many = get_usage(usage, start_time=NOV_1, limit=32)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "limit"
    assert get_usage(usage).status_code == 400  # start_time is required


def test_usage_requires_the_admin_key(usage: FakeOpenAIUsage) -> None:
    wrong = get_usage(usage, key="sk-wrong", start_time=NOV_1)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(usage.completions_url, params={"start_time": NOV_1}).status_code == 401
    assert usage.requests[0].query["start_time"] == [str(NOV_1)]


def test_usage_faults(usage: FakeOpenAIUsage) -> None:
    usage.fail_next(status=500, times=2)
    usage.fail_next(status=429, retry_after=3)
    usage.garbage_next()
    usage.wrong_schema_next()

    statuses = [get_usage(usage, start_time=NOV_1) for _ in range(6)]

    assert [r.status_code for r in statuses] == [500, 500, 429, 200, 200, 200]
    assert statuses[2].headers["Retry-After"] == "3"
    assert statuses[2].json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(ValueError):
        statuses[3].json()
    assert "data" not in statuses[4].json()
    assert statuses[5].json()["object"] == "page"
    assert len(usage.requests) == 6 and usage.pending_faults == 0


def test_hanging_request_times_out_and_stop_is_prompt() -> None:
    fake = FakeOpenAIUsage().start()
    fake.hang_next(5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(fake.completions_url, params={"start_time": NOV_1}, timeout=0.2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1


def test_a_short_hang_still_answers(usage: FakeOpenAIUsage) -> None:
    usage.hang_next(0.2)
    started = time.monotonic()
    assert get_usage(usage, start_time=NOV_1).status_code == 200
    assert time.monotonic() - started >= 0.2


# -- fake together.ai ----------------------------------------------------------------


@pytest.fixture
def together() -> Iterator[FakeTogether]:
    with FakeTogether(api_key="tg-key") as fake:
        yield fake


def get_together(fake: FakeTogether, path: str, *, key: str = "tg-key", **params: Any) -> httpx.Response:
    return httpx.get(fake.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=5)


def test_models_are_a_bare_list_with_pricing(together: FakeTogether) -> None:
    models = get_together(together, "/models").json()
    assert isinstance(models, list)
    llama = next(m for m in models if m["id"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo")
    assert llama["object"] == "model" and llama["type"] == "chat" and isinstance(llama["created"], int)
    assert set(llama["pricing"]) == {"hourly", "input", "output", "base", "finetune"}
    assert llama["pricing"]["input"] == 0.88
    dedicated = get_together(together, "/models", dedicated="true").json()
    assert [m["id"] for m in dedicated] == ["deepseek-ai/DeepSeek-V3"]


def test_hardware_lists_prices_per_minute(together: FakeTogether) -> None:
    together.hardware = [
        Hardware("1x_nvidia_a100_80gb_sxm", cents_per_minute=2.4, gpu_type="a100-80gb"),
        Hardware("2x_nvidia_h100_80gb_sxm", cents_per_minute=11.16, gpu_count=2, models=("x/other",)),
    ]
    listing = get_together(together, "/hardware").json()
    assert listing["object"] == "list"
    first = listing["data"][0]
    assert first["object"] == "hardware" and first["pricing"] == {"cents_per_minute": 2.4}
    assert set(first["specs"]) == {"gpu_type", "gpu_link", "gpu_memory", "gpu_count"}
    assert "availability" not in first and first["updated_at"]

    for_model = get_together(together, "/hardware", model="x/llama").json()["data"]
    assert [h["id"] for h in for_model] == ["1x_nvidia_a100_80gb_sxm"]
    assert for_model[0]["availability"] == {"status": "available"}


def test_endpoints_list_and_detail(together: FakeTogether) -> None:
    together.endpoints = [
        Endpoint("endpoint-1111", model="x/llama", hardware="1x_nvidia_a100_80gb_sxm", state="STOPPED"),
        Endpoint("endpoint-2222", model="x/mix", type="serverless", owner="together"),
    ]
    listing = get_together(together, "/endpoints").json()
    assert listing["object"] == "list"
    first = listing["data"][0]
    assert set(first) == {"object", "id", "name", "model", "type", "owner", "state", "created_at"}
    assert (first["object"], first["state"]) == ("endpoint", "STOPPED")
    dedicated = get_together(together, "/endpoints", type="dedicated").json()["data"]
    assert [e["id"] for e in dedicated] == ["endpoint-1111"]
    mine = get_together(together, "/endpoints", mine="true").json()["data"]
    assert [e["id"] for e in mine] == ["endpoint-1111"]

    detail = get_together(together, "/endpoints/endpoint-1111").json()
    assert detail["hardware"] == "1x_nvidia_a100_80gb_sxm"
    assert detail["autoscaling"] == {"min_replicas": 1, "max_replicas": 1}
    missing = get_together(together, "/endpoints/endpoint-nope")
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_raw_dicts_are_served_verbatim(together: FakeTogether) -> None:
    raw = {"id": "c/d", "object": "model", "type": "chat"}  # no pricing at all
    together.models = [TogetherModel("a/b", input=1, output=2), raw]
    models = get_together(together, "/models").json()
    assert models[1] == raw


def test_together_key_is_checked_with_the_spec_statuses(together: FakeTogether) -> None:
    assert get_together(together, "/models", key="nope").status_code == 401
    denied = get_together(together, "/hardware", key="nope")
    assert denied.status_code == 403 and denied.json()["error"]["message"]
    assert get_together(together, "/endpoints", key="nope").status_code == 403


def test_together_faults_target_paths(together: FakeTogether) -> None:
    together.fail_next("/v1/hardware", status=503)
    together.drop_next("/v1/endpoints")

    assert get_together(together, "/models").status_code == 200
    assert get_together(together, "/hardware").status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        get_together(together, "/endpoints")
    assert get_together(together, "/endpoints").status_code == 200

    together.set_down()
    assert get_together(together, "/models").status_code == 503
    together.set_down(False)
    assert get_together(together, "/models").status_code == 200


# -- shared plumbing -----------------------------------------------------------------


def test_refused_connections_come_back_on_the_same_port(together: FakeTogether) -> None:
    url = together.url
    together.set_down(status=None)
    with pytest.raises(httpx.ConnectError):
        get_together(together, "/models")
    together.fail_next(status=500)
    together.clear_faults()
    assert together.url == url and together.pending_faults == 0
    assert get_together(together, "/models").status_code == 200
    assert len(together.requests) == 1, "refused connections never reach the log"


def test_history_returns_metadata_only_when_asked(slack: FakeSlack, client: WebClient) -> None:
    metadata = {"event_type": "budget_guard_message", "event_payload": {"key": "alert:x"}}
    posted = client.chat_postMessage(channel="C0HIST", text="hello", metadata=metadata)
    plain = client.conversations_history(channel="C0HIST")
    assert plain["messages"][0]["ts"] == posted["ts"] and "metadata" not in plain["messages"][0]
    full = client.conversations_history(channel="C0HIST", include_all_metadata=True, oldest=f"{time.time() - 60:.6f}")
    assert full["messages"][0]["metadata"]["event_payload"]["key"] == "alert:x"
    assert client.conversations_history(channel="C0HIST", oldest=posted["ts"])["messages"] == []


# -- fake together.ai: batches, files, fine-tunes, clusters against the spec's schemas ---------------


def spec_schema(name: str) -> tuple[set[str], set[str]]:
    """(properties, required) of a component schema of the together.ai spec."""
    spec = (SPECS / "together-openapi.yaml").read_text()
    match = re.search(rf"^    {name}:\n(.*?)(?=^    \S)", spec, re.MULTILINE | re.DOTALL)
    assert match, name
    block = match.group(1)
    properties = set(re.findall(r"^        (\w+):$", block.split("      properties:\n")[1], re.MULTILINE))
    required = set()
    if "      required:\n" in block:
        required = set(re.findall(r"^        - (\w+)$", block.split("      required:\n")[1].split("      properties:")[0],
                                  re.MULTILINE))
    return properties, required


@pytest.mark.skipif(not (SPECS / "together-openapi.yaml").exists(), reason="needs ../shared/specs beside the checkout")
def test_batches_files_fine_tunes_and_clusters_carry_the_spec_fields(together: FakeTogether) -> None:
    from datetime import datetime, timezone

    from tests.fakes.together_api import BatchJob, FineTune, GpuCluster

    stored = together.add_file(b'{"custom_id": "a", "body": {"model": "x/m", "messages": []}}\n', purpose="batch-api")
    together.batches = [BatchJob("b-1", output_file_id=stored.id, model_id="x/m",
                                 completed_at=datetime(2026, 11, 1, tzinfo=timezone.utc))]
    together.fine_tunes = [FineTune("ft-1", total_price=10, completed_event_at="2026-11-01T00:00:00Z")]
    together.clusters = [GpuCluster("c-1", created_at="2026-11-01T00:00:00Z")]
    served = {
        "BatchJob": get_together(together, "/batches").json()[0],
        "FileResponse": get_together(together, f"/files/{stored.id}").json(),
        "FinetuneResponseTruncated": get_together(together, "/fine-tunes").json()["data"][0],
        "GPUClusterInfo": get_together(together, "/compute/clusters").json()["clusters"][0],
        "FineTuneEvent": get_together(together, "/fine-tunes").json()["data"][0]["events"][0],
    }
    for name, item in served.items():
        properties, required = spec_schema(name)
        assert required <= set(item) <= properties, (name, set(item) - properties, required - set(item))
    assert get_together(together, "/files").json()["data"][0]["id"] == stored.id
    content = get_together(together, f"/files/{stored.id}/content")
    assert content.headers["content-type"].startswith("text/plain") and content.content.startswith(b'{"custom_id"')
    denied = get_together(together, "/batches", key="nope")
    assert denied.status_code == 401 and isinstance(denied.json()["error"], str)  # BatchErrorResponse
    for path in ("/files", "/fine-tunes", "/compute/clusters"):
        assert get_together(together, path, key="nope").status_code == 401


def test_a_batch_created_over_http_completes_with_an_output_file(together: FakeTogether) -> None:
    from datetime import datetime, timezone

    upload = httpx.post(together.url + "/files/upload", headers={"Authorization": "Bearer tg-key"}, timeout=5,
                        data={"purpose": "batch-api", "file_name": "in.jsonl"},
                        files={"file": ("in.jsonl", b'{"custom_id": "q1", "body": {"model": "x/m", "messages": '
                                                    b'[{"role": "user", "content": "hi"}]}}\n')})
    assert upload.status_code == 200 and upload.json()["purpose"] == "batch-api"
    created = httpx.post(together.url + "/batches", headers={"Authorization": "Bearer tg-key"}, timeout=5,
                         json={"endpoint": "/v1/chat/completions", "input_file_id": upload.json()["id"]})
    assert created.status_code == 201 and created.json()["job"]["status"] == "IN_PROGRESS"
    job = together.complete_batch(created.json()["job"]["id"], at=datetime(2026, 11, 1, tzinfo=timezone.utc))
    [line] = get_together(together, f"/files/{job.output_file_id}/content").content.splitlines()
    result = json.loads(line)
    assert result["custom_id"] == "q1" and result["response"]["status_code"] == 200
    assert result["response"]["body"]["usage"]["prompt_tokens"] > 0 and result["response"]["body"]["model"] == "x/m"
    missing = httpx.post(together.url + "/batches", headers={"Authorization": "Bearer tg-key"}, timeout=5,
                         json={"endpoint": "/v1/chat/completions", "input_file_id": "file-nope"})
    assert missing.status_code == 400 and "not found" in missing.json()["error"]
