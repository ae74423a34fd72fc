"""Price sync from together.ai's /v1/models and /v1/hardware (a fake that answers as the spec says)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from db.models import SyncedHardware, SyncedPrice
from jobs.config.context import Context
from jobs.config.settings import Settings
from jobs.usage.price_sync import sync_prices
from jobs.usage.sources.http import RetryPolicy, SourceError
from tests.fakes.together_api import FakeTogether, Hardware, TogetherModel

NOW = datetime(2026, 11, 20, 3, 17, tzinfo=timezone.utc)
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda seconds: None)


@pytest.fixture
def together() -> Iterator[FakeTogether]:
    models = [TogetherModel(id="arcee-ai/maestro-reasoning", input=0.9, output=3.3),
              TogetherModel(id="acme/brand-new-model", input=0.25, output=1.0)]
    hardware = [Hardware(id="1x_nvidia_h100_80gb_sxm", cents_per_minute=6.65, gpu_type="h100-80gb",
                         gpu_link="sxm", gpu_memory=80, gpu_count=1, updated_at="2026-11-01T00:00:00Z")]
    with FakeTogether(api_key="tg-key", models=models, hardware=hardware) as fake:
        yield fake


def test_sync_adds_new_models_and_start_dates_a_changed_price(database_url: str, together: FakeTogether) -> None:
    settings = Settings(database_url=database_url, together_api_key="tg-key", together_api_url=together.url)
    context = Context.open(settings)
    report = sync_prices(context, now=NOW, retry=NO_WAIT)
    assert (report.new, report.changed, report.hardware) == (2, 0, 1)
    catalog = context.reload_catalog()
    price = catalog.price("together", "acme/brand-new-model", date(2026, 11, 21))
    assert price is not None and price.input == Decimal("0.25") and price.source == "provider-api"
    assert catalog.price("together", "acme/brand-new-model", date(2026, 11, 19)) is None  # not before we saw it

    again = sync_prices(context, now=NOW + timedelta(days=1), retry=NO_WAIT)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 2)

    together.models = [TogetherModel(id="arcee-ai/maestro-reasoning", input=0.6, output=3.3),
                       TogetherModel(id="acme/brand-new-model", input=0.25, output=1.0)]
    changed = sync_prices(context, now=NOW + timedelta(days=2), retry=NO_WAIT)
    assert changed.changed == 1
    catalog = context.reload_catalog()
    assert catalog.price("together", "arcee-ai/maestro-reasoning", date(2026, 11, 21)).input == Decimal("0.9")
    assert catalog.price("together", "arcee-ai/maestro-reasoning", date(2026, 11, 23)).input == Decimal("0.6")
    with context.sessions() as session:
        assert session.get(SyncedHardware, "1x_nvidia_h100_80gb_sxm").cents_per_minute == Decimal("6.65")
        assert len(session.scalars(select(SyncedPrice)).all()) == 3
    context.close()


def test_a_failing_api_changes_nothing(database_url: str, together: FakeTogether) -> None:
    settings = Settings(database_url=database_url, together_api_key="wrong", together_api_url=together.url)
    context = Context.open(settings)
    with pytest.raises(SourceError, match="HTTP 401"):
        sync_prices(context, now=NOW, retry=NO_WAIT)
    good = Settings(database_url=database_url, together_api_key="tg-key", together_api_url=together.url)
    together.garbage_next("/v1/models", times=5)
    with pytest.raises(SourceError, match="not JSON"):
        sync_prices(Context(good, context.engine, context.sessions, context.catalog), now=NOW, retry=NO_WAIT)
    with context.sessions() as session:
        assert session.scalars(select(SyncedPrice)).all() == []
    context.close()
