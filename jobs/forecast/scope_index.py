"""The ledger's daily rows indexed once by dimensions, for everything that reads spend by scope:
the budget check, `/budget list`, alert breakdowns, the digest and the App Home.

An index answers which series fall in a scope, their spend and daily cost, and the scope's
month-end projection, each computed once per index: fifty budgets scan the rows once, and a
scope's forecast is the same whoever asks. The forecast of all spend is the sum of each
model's (the digest's total); any other scope's series are summed per model and mode and
projected together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

from db.models import from_nanos
from db.rollups import DailyRow
from jobs.forecast.projection import PriceMemo, Projection, Series, combine, fraction_of_day, index_rows, project_series
from jobs.forecast.scopes import in_scope
from pricing.catalog import Catalog

Dims = tuple[str, str, str, str, str]  # model, mode, project, feature, tags
Keys = tuple[Dims, ...]  # in the order the rows first named them, so sums and ties do not vary by run


def dimensions(row: DailyRow) -> Dims:
    return (row.model, row.mode, row.project, row.feature, row.tags)


class ScopeIndex:
    """Rows up to the local day of `local_now`, one integer `Series` per set of dimensions."""

    def __init__(self, rows: Iterable[DailyRow], local_now: datetime, catalog: Catalog) -> None:
        rows = list(rows)
        self.today = local_now.date()
        self.month_start = self.today.replace(day=1)
        self.day_fraction = fraction_of_day(local_now)
        self.series: dict[Dims, Series] = index_rows(rows, self.today, key=dimensions)  # type: ignore[assignment]
        self.examples: dict[Dims, DailyRow] = {}
        self.uptime: dict[tuple[Dims, date], int] = defaultdict(int)  # series hold tokens and cost only
        for row in rows:
            key = dimensions(row)
            self.examples.setdefault(key, row)
            if row.uptime_minutes:
                self.uptime[(key, row.day)] += row.uptime_minutes
        self.prices = PriceMemo(catalog)
        self.all: Keys = tuple(self.series)
        self._scopes: dict[tuple[tuple[str, str], ...], Keys] = {}
        self._month_nanos: dict[Dims, int] | None = None
        self._projections: dict[frozenset[Dims], Projection] = {}
        self._models: tuple[Projection, dict[str, Projection]] | None = None

    # ------------------------------------------------------------------ which series

    def keys_in(self, scope: Mapping[str, str]) -> Keys:
        """The series inside `scope` (the empty scope is all of them)."""
        memo = tuple(sorted(scope.items()))
        keys = self._scopes.get(memo)
        if keys is None:
            keys = self._scopes[memo] = self.all if not scope else self.keys_where(lambda r: in_scope(scope, r))
        return keys

    def keys_where(self, wanted: Callable[[DailyRow], bool]) -> Keys:
        return tuple(key for key in self.series if wanted(self.examples[key]))

    # ------------------------------------------------------------------ what they spent

    def spent(self, keys: Iterable[Dims]) -> Decimal:
        """Spend this month, up to today."""
        if self._month_nanos is None:
            self._month_nanos = {key: sum(v for d, v in series.cost.items() if d >= self.month_start)
                                 for key, series in self.series.items()}
        return from_nanos(sum(self._month_nanos[k] for k in keys))

    def daily(self, keys: Iterable[Dims]) -> dict[date, int]:
        """Nano-dollars per day, summed over `keys`."""
        totals: dict[date, int] = defaultdict(int)
        for key in keys:
            for day, nanos in self.series[key].cost.items():
                totals[day] += nanos
        return totals

    def spend_by(self, keys: Iterable[Dims], label: Callable[[DailyRow], str], days: Callable[[date], bool],
                 *, zeros: bool = False) -> dict[str, int]:
        """Nano-dollars per `label` of the series' dimensions over the days `days` accepts (labels
        that spent nothing left out, unless `zeros`)."""
        spend: dict[str, int] = defaultdict(int)
        for key in keys:
            total = sum(v for d, v in self.series[key].cost.items() if days(d))
            if total or zeros:
                spend[label(self.examples[key])] += total
        return spend

    # ------------------------------------------------------------------ where they are heading

    def projection(self, keys: Keys, name: str) -> Projection | None:
        """The month-end projection of `keys` (named `name` if this is the first ask); None without usage."""
        if not keys:
            return None
        if len(keys) == len(self.all):
            return self.models()[0]
        memo = frozenset(keys)
        projection = self._projections.get(memo)
        if projection is None:
            projection, _ = project_series({name: self._combined(keys)}, today=self.today,
                                           day_fraction=self.day_fraction, catalog=self.prices.catalog,
                                           prices=self.prices)
            self._projections[memo] = projection
        return projection

    def total(self) -> Projection | None:
        """All spend's projection; None on an empty ledger."""
        return self.projection(self.all, "total")

    def models(self) -> tuple[Projection, dict[str, Projection]]:
        """The total and each model's projection; the total's interval comes from the summed series."""
        if self._models is None:
            by_model: dict[str, list[Dims]] = defaultdict(list)
            for key, series in self.series.items():
                by_model[series.model].append(key)
            groups = {model: combine(self.series[k] for k in keys) for model, keys in by_model.items()}
            total, per_model = project_series(groups, today=self.today, day_fraction=self.day_fraction,
                                              catalog=self.prices.catalog, prices=self.prices)
            for model, projection in per_model.items():
                self._projections.setdefault(frozenset(by_model[model]), projection)
            self._models = total, per_model
        return self._models

    def _combined(self, keys: Keys) -> list[Series]:
        """The keys' series summed per model and mode, as `combine` does; a lone series is used as it
        is (projections only read them), which spares copying most of a scope's series."""
        groups: dict[tuple[str, str], list[Series]] = defaultdict(list)
        for key in keys:
            series = self.series[key]
            groups[(series.model, series.mode)].append(series)
        return [parts[0] if len(parts) == 1 else combine(parts)[0] for parts in groups.values()]
