"""The catalog as this deployment sees it: base data, synced provider prices and overrides."""

from __future__ import annotations

from datetime import timezone
from typing import TYPE_CHECKING

from jobs.config.settings import ConfigError, Settings
from pricing.catalog import DEFAULT_BATCH_DISCOUNT, Catalog, HardwareOption, Price, UnknownModel, load_catalog

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def override_prices(settings: Settings) -> list[Price]:
    """The operator's negotiated prices as catalog entries."""
    prices = []
    for o in settings.prices:
        prices.append(
            Price(
                provider="together",
                model=o.model,
                input=o.input,
                output=o.output,
                cached_input=o.cached_input,
                source="config",
                effective_from=o.start,
                batch_discount=o.batch_discount if o.batch_discount is not None else DEFAULT_BATCH_DISCOUNT,
                batch_served=o.batch,
            )
        )
    return prices


def synced_prices(session: Session) -> list[Price]:
    """Prices read from together.ai's /v1/models, start-dated from when they were first seen."""
    from sqlalchemy import select

    from db.models import SyncedPrice

    rows = session.scalars(select(SyncedPrice)).all()
    return [
        Price(
            provider=row.provider,
            model=row.model,
            input=row.input_rate,
            output=row.output_rate,
            cached_input=row.cached_rate,
            source="provider-api",
            effective_from=row.effective_from.astimezone(timezone.utc).date(),
        )
        for row in rows
    ]


def build_catalog(settings: Settings, session: Session | None = None) -> Catalog:
    """Base data, our overlay, synced prices (when a session is given), then the operator's overrides
    and aliases; ConfigError names an alias whose model the catalog lacks."""
    try:
        return load_catalog(
            overrides=override_prices(settings),
            synced=synced_prices(session) if session is not None else (),
            hardware=[HardwareOption(h.gpu.lower(), h.count, h.hourly, f"{h.count}x {h.gpu}") for h in settings.hardware],
            throughput=[(t.model, t.gpu, t.tokens_per_second) for t in settings.throughput],
            aliases=[(a.name, a.model) for a in settings.aliases],
            model_facts=settings.model_facts_overrides(),
        )
    except UnknownModel as exc:
        alias = next(a.name for a in settings.aliases if a.model == exc.name)
        hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
        raise ConfigError(f"aliases {alias!r}.model: no catalog model called {exc.name[:60]!r} "
                          f"(give its exact id){hint}") from None
