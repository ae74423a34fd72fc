"""The price catalog: start-dated prices per model, from genai-prices, our overlay, provider
APIs and operator overrides (in rising order of precedence), and forgiving model lookup."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pricing.base_prices import base_rates
from pricing.facts import GpuFacts, ModelFacts, gpu_facts, load_model_facts

DATA = Path(__file__).resolve().parent / "data"
PRIMARY_PROVIDER = "together"
MAX_REMEMBERED = 50_000  # model names whose match a catalog keeps; past that it starts afresh
SUGGESTION_CUTOFF = 0.6  # how alike (difflib's ratio) a name must be to be offered as a suggestion
DEFAULT_BATCH_DISCOUNT = Decimal("50")
SOURCE_RANK = {"genai-prices": 0, "overlay": 1, "provider-api": 2, "config": 3}


@dataclass(frozen=True)
class Price:
    """Serverless rates in USD per 1M tokens for one model from one date on."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    source: str = "genai-prices"
    effective_from: date | None = None
    batch_discount: Decimal = DEFAULT_BATCH_DISCOUNT
    batch_served: bool = True

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"

    def batch(self) -> "Price | None":
        """The same model on batch, or None where batch does not serve it."""
        if not self.batch_served:
            return None
        factor = (100 - self.batch_discount) / 100
        return replace(
            self,
            input=self.input * factor,
            output=self.output * factor,
            cached_input=self.cached_input * factor if self.cached_input is not None else None,
        )


@dataclass(frozen=True)
class HardwareOption:
    """A dedicated GPU configuration and its hourly price."""

    gpu: str
    count: int
    hourly: Decimal
    label: str = ""


@dataclass(frozen=True)
class ModelMatch:
    """The model a name resolved to, and the runners-up worth naming."""

    provider: str
    model: str
    runners_up: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The name the ledger, budgets and quotes use: together ids bare, others `provider/model`."""
        return _label(self.provider, self.model)


class UnknownModel(LookupError):
    """No model matches; `suggestions` holds the closest names."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = tuple(suggestions)


@lru_cache(maxsize=8192)
def normalize(name: str) -> str:
    """Case, dashes, dots and underscores do not matter when matching names."""
    return _NOT_ALNUM.sub("", name.lower())


_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass
class Catalog:
    """Every known price, by provider and model, each list sorted by start date."""

    prices: dict[tuple[str, str], list[Price]] = field(default_factory=dict)
    hardware: dict[str, HardwareOption] = field(default_factory=dict)
    throughput: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    not_batch_served: frozenset[str] = frozenset()
    aliases: dict[str, tuple[str, str]] = field(default_factory=dict)  # normalized name -> (provider, model)
    _matches: dict[str, ModelMatch | None] = field(default_factory=dict, repr=False, compare=False)
    model_facts: dict[str, ModelFacts] = field(default_factory=dict)

    def gpu(self, name: str) -> GpuFacts | None:
        """Data-sheet facts for a dedicated hardware key (`h100`), if the capacity model knows it."""
        return gpu_facts(name)

    def add(self, price: Price) -> None:
        """Add a price; for the same start date a higher-ranked source wins."""
        entries = self.prices.setdefault((price.provider, price.model), [])
        entries.append(price)
        entries.sort(key=lambda p: (p.effective_from or date.min, SOURCE_RANK.get(p.source, 0)))
        self._matches.clear()

    def alias(self, name: str, target: str) -> None:
        """Let `name` mean the catalog model `target` (an exact id, `provider/model` for others).

        Raises UnknownModel when `target` is not in the catalog."""
        provider, model = self.split(target)
        if (provider, model) not in self.prices:
            raise UnknownModel(target, self.suggest(target))
        self.aliases[normalize(name)] = (provider, model)
        self._matches.clear()

    def providers(self) -> set[str]:
        return {provider for provider, _ in self.prices}

    def models(self, provider: str = PRIMARY_PROVIDER) -> list[str]:
        return sorted(model for prov, model in self.prices if prov == provider)

    def price(self, provider: str, model: str, at: date | datetime | None = None) -> Price | None:
        """The price in effect for `model` at `at` (today when None); None if unpriced."""
        entries = self.prices.get((provider, model))
        if not entries:
            return None
        day = _as_date(at)
        in_effect = [p for p in entries if p.effective_from is None or p.effective_from <= day]
        if not in_effect:
            return None
        # Operator overrides win outright; otherwise the latest start date, then source rank.
        configured = [p for p in in_effect if p.source == "config"]
        in_effect = configured or in_effect
        best_day = max(p.effective_from or date.min for p in in_effect)
        same_day = [p for p in in_effect if (p.effective_from or date.min) == best_day]
        best = max(same_day, key=lambda p: SOURCE_RANK.get(p.source, 0))
        if best.source != "config" and (model in self.not_batch_served or best.key in self.not_batch_served):
            best = replace(best, batch_served=False)
        return best

    def price_of(self, name: str, at: date | datetime | None = None) -> Price | None:
        """The price for a model as usage names it (`model` or `provider/model`), without guessing."""
        provider, model = self.split(name)
        return self.price(provider, model, at) if model else None

    def usage_price(self, name: str, mode: str, at: date | datetime | None = None) -> Price | None:
        """The price of usage recorded as `name` in `mode` at `at`, or None (unpriced): the one
        rule the ledger, the forecast, the batch advice and `reprice` share.

        The name resolves as quotes and budgets resolve it (`match`); batch gets the batch
        discount."""
        found = self.match(name)
        price = self.price(found.provider, found.model, at) if found is not None else None
        return price.batch() if price is not None and mode == "batch" else price

    def split(self, name: str) -> tuple[str, str]:
        """`provider/model` → (provider, model) where provider is known, else (together, name).

        Exact ids win; otherwise a case-insensitive exact id match is accepted."""
        name = name.strip()
        if (PRIMARY_PROVIDER, name) in self.prices:
            return PRIMARY_PROVIDER, name
        head, sep, rest = name.partition("/")
        if sep and head in self.providers() and (head, rest) in self.prices:
            return head, rest
        lowered = name.lower()
        for provider, model in self.prices:
            if provider == PRIMARY_PROVIDER and model.lower() == lowered:
                return provider, model
        if sep and head in self.providers():
            for provider, model in self.prices:
                if provider == head and model.lower() == rest.lower():
                    return provider, model
        return PRIMARY_PROVIDER, name

    def resolve(self, name: str) -> ModelMatch:
        """Find a model forgivingly (see `match`); raises UnknownModel with the closest names."""
        found = self.match(name)
        if found is None:
            raise UnknownModel(name, self.suggest(name))
        return found

    def match(self, name: str) -> ModelMatch | None:
        """The model `name` means, or None: the one matching quotes, budgets and recorded usage share.

        In order: an `[[aliases]]` name; an exact id; at together.ai, normalized equality, then
        prefix, then substring (shorter names first); then genai-prices' own rules for the
        name as providers' APIs report it (`gpt-4o`, `claude-3-5-sonnet-20241022`); then the same
        normalized name at another provider. `provider/model` searches that provider only. Remembered per name: the push path asks it once per name."""
        try:
            return self._matches[name]
        except KeyError:
            pass
        if len(self._matches) >= MAX_REMEMBERED:
            self._matches.clear()
        found = self._matches[name] = self._match(name)
        return found

    def _match(self, name: str) -> ModelMatch | None:
        query = name.strip()
        if not query:
            return None
        aliased = self.aliases.get(normalize(query))
        if aliased is not None:
            return ModelMatch(*aliased)
        provider, model = self.split(query)
        if (provider, model) in self.prices:
            return ModelMatch(provider, model)
        head, sep, rest = query.partition("/")
        providers = {p.lower(): p for p in self.providers()}
        if sep and head.lower() in providers and head.lower() != PRIMARY_PROVIDER:
            provider = providers[head.lower()]
            ranked = _rank(normalize(rest), [(p, m) for (p, m) in self.prices if p == provider])
            if not ranked:
                return self._known_by_genai_prices(rest, provider)
        else:
            if sep and head.lower() == PRIMARY_PROVIDER:
                query = rest
            ranked = _rank(normalize(query), [(p, m) for (p, m) in self.prices if p == PRIMARY_PROVIDER])
            if not ranked:
                return self._known_by_genai_prices(query) or self._same_name_elsewhere(query)
        best = ranked[0]
        return ModelMatch(best[0], best[1], tuple(_label(p, m) for p, m in ranked[1:4]))

    def _same_name_elsewhere(self, name: str) -> ModelMatch | None:
        """A model of exactly this (normalized) name at another provider, the maker's own API first."""
        wanted = normalize(name)
        same = [(p, m) for (p, m) in self.prices if wanted in (normalize(m), normalize(m.rpartition("/")[2]))]
        if not same:
            return None
        same.sort(key=lambda pm: (_provider_rank(pm[0]), len(pm[1]), pm))
        return ModelMatch(*same[0], tuple(_label(p, m) for p, m in same[1:4]))

    def _known_by_genai_prices(self, name: str, provider: str | None = None) -> ModelMatch | None:
        """The model genai-prices' matching rules find for `name` (at `provider`), if we price it."""
        from genai_prices.data_snapshot import get_snapshot

        try:
            found_provider, found = get_snapshot().find_provider_model(name, None, provider, None)
        except LookupError:
            return None
        key = (found_provider.id, found.id)
        return ModelMatch(*key) if key in self.prices else None

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Up to `n` catalog names like `name` (at its provider, if it names one), most alike first;
        none that are not alike at all."""
        head, sep, rest = name.strip().partition("/")
        providers = {p.lower(): p for p in self.providers()}
        if sep and head.lower() in providers:
            wanted, only = normalize(rest), providers[head.lower()]
        else:
            wanted, only = normalize(name), None
        if not wanted:
            return []
        best: dict[str, tuple[float, int, str]] = {}  # per short name: its best provider's label
        for provider, model in self.prices:
            if only is not None and provider != only:
                continue
            short = normalize(model.rpartition("/")[2])
            score = max(_likeness(wanted, short), _likeness(wanted, short[: len(wanted) + 1]))
            if score < SUGGESTION_CUTOFF:
                continue
            entry = (-score, _provider_rank(provider), _label(provider, model))
            if short not in best or entry < best[short]:
                best[short] = entry
        return [label for _, _, label in sorted(best.values())[:n]]


def _label(provider: str, model: str) -> str:
    return model if provider == PRIMARY_PROVIDER else f"{provider}/{model}"


def _likeness(a: str, b: str) -> float:
    """difflib's ratio, skipping the full comparison where its cheap upper bounds rule it out."""
    matcher = difflib.SequenceMatcher(None, a, b)
    if matcher.real_quick_ratio() < SUGGESTION_CUTOFF or matcher.quick_ratio() < SUGGESTION_CUTOFF:
        return 0.0
    return matcher.ratio()


MODEL_MAKERS = ("openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "meta", "cohere", "moonshotai")


def _provider_rank(provider: str) -> int:
    """together.ai first, then the makers' own APIs, then everyone reselling them."""
    if provider == PRIMARY_PROVIDER:
        return 0
    return 1 + MODEL_MAKERS.index(provider) if provider in MODEL_MAKERS else 1 + len(MODEL_MAKERS)


def _rank(wanted: str, candidates: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Candidates matching `wanted`, best first: equal, then prefix, then substring; shorter first."""
    if not wanted:
        return []
    scored: list[tuple[int, int, str, tuple[str, str]]] = []
    for provider, model in candidates:
        full, short = normalize(model), normalize(model.rpartition("/")[2])
        if wanted in (full, short):
            tier = 0
        elif short.startswith(wanted) or full.startswith(wanted):
            tier = 1
        elif wanted in short or wanted in full:
            tier = 2
        else:
            continue
        scored.append((tier, len(short) - len(wanted), model.lower(), (provider, model)))
    scored.sort()
    return [item[3] for item in scored]


def _as_date(at: date | datetime | None) -> date:
    if at is None:
        return datetime.now(timezone.utc).date()
    if isinstance(at, datetime):
        return at.astimezone(timezone.utc).date() if at.tzinfo else at.date()
    return at


@lru_cache(maxsize=1)
def _base_prices() -> tuple[Price, ...]:
    return tuple(
        Price(provider=r.provider, model=r.model, input=r.input, output=r.output, cached_input=r.cached_input,
              source="genai-prices", effective_from=r.start)
        for r in base_rates()
    )


def _read_toml(name: str) -> dict[str, Any]:
    return tomllib.loads((DATA / name).read_text(encoding="utf-8"))


def load_catalog(
    overrides: Iterable[Price] = (),
    synced: Iterable[Price] = (),
    hardware: Iterable[HardwareOption] = (),
    throughput: Iterable[tuple[str, str, Decimal]] = (),
    aliases: Iterable[tuple[str, str]] = (),
    model_facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> Catalog:
    """The full catalog: genai-prices, our overlay, provider-API prices, then operator overrides;
    `aliases` are (name, catalog id) pairs (UnknownModel for an id the catalog lacks); dedicated
    hardware, measured throughput and model facts (ours, then the operator's)."""
    overlay = _read_toml("overlay.toml")
    batch = overlay.get("batch", {})
    discount = Decimal(str(batch.get("default_discount", DEFAULT_BATCH_DISCOUNT)))
    catalog = Catalog(not_batch_served=frozenset(batch.get("not_served", [])))
    for price in _base_prices():
        catalog.add(replace(price, batch_discount=discount) if discount != DEFAULT_BATCH_DISCOUNT else price)
    for entry in overlay.get("models", []):
        catalog.add(
            Price(
                provider=entry["provider"],
                model=entry["model"],
                input=Decimal(entry["input"]),
                output=Decimal(entry["output"]),
                cached_input=Decimal(entry["cached_input"]) if "cached_input" in entry else None,
                source="overlay",
                batch_discount=discount,
            )
        )
    for price in synced:
        catalog.add(replace(price, source="provider-api"))
    for price in overrides:  # `openai/gpt-4o-mini` overrides OpenAI's entry; a new name is together.ai's
        provider, model = catalog.split(price.model)
        catalog.add(replace(price, provider=provider, model=model, source="config"))

    table = _read_toml("hardware.toml")
    for entry in table.get("hardware", []):
        option = HardwareOption(entry["gpu"].lower(), int(entry["count"]), Decimal(entry["hourly"]), entry.get("label", ""))
        catalog.hardware[option.gpu] = option
    for option in hardware:
        catalog.hardware[option.gpu.lower()] = option
    for entry in table.get("throughput", []):
        catalog.throughput[(entry["model"], entry["gpu"].lower())] = Decimal(entry["tokens_per_second"])
    for model, gpu, tokens_per_second in throughput:
        catalog.throughput[(model, gpu.lower())] = tokens_per_second
    for name, target in aliases:
        catalog.alias(name, target)
    catalog.model_facts = load_model_facts(model_facts)
    return catalog
