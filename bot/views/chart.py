"""The digest's chart: daily spend per model this month, stacked (the top models and "other"),
with the forecast to month-end and, around each remaining day, that day's share of the month-end
80% range (not a range for the day on its own). Drawn with matplotlib's Agg canvas on a `Figure`
of its own (no pyplot, no display, no global state), so it is safe in a server thread."""

from __future__ import annotations

import calendar
import io
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from jobs.digest.daily import Digest, ForecastDay
from pricing.money import usd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOP = 8
OTHER = "other"
OTHER_COLOUR = "#b0b0b0"
FORECAST_COLOUR = "#444444"
BAND_LABEL = "month-end 80% range,\nshared by day"  # each day's share of the month's interval, not a daily range
BAR_WIDTH = 0.8
COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#86bcb6")  # Tableau 10: distinguishable, and fine in greyscale


@dataclass(frozen=True)
class ChartData:
    """What the chart draws: the month's days, one stack per top model (+ other), the forecast."""

    title: str
    subtitle: str
    days: list[date]  # every day of the month
    stacks: list[tuple[str, list[Decimal]]]  # label, spend per day in `days` (0 after today)
    forecast: list[ForecastDay]


def chart_data(digest: Digest, top: int = TOP) -> ChartData | None:
    """The chart's numbers, or None when there is no spend this month and no forecast to draw."""
    o = digest.overview
    first = o.today.replace(day=1)
    days = [first + timedelta(days=n) for n in range(calendar.monthrange(first.year, first.month)[1])]
    totals = {model: sum(per_day.values(), Decimal(0)) for model, per_day in digest.daily.items()}
    ranked = sorted((m for m, t in totals.items() if t > 0), key=lambda m: (-totals[m], m))
    if not ranked and not any(f.point > 0 for f in digest.forecast_days):
        return None
    shown, rest = ranked[:top], ranked[top:]
    stacks = [(model, [digest.daily[model].get(d, Decimal(0)) for d in days]) for model in shown]
    if rest:
        stacks.append((f"{OTHER} ({len(rest)} model{'s' if len(rest) != 1 else ''})",
                       [sum((digest.daily[m].get(d, Decimal(0)) for m in rest), Decimal(0)) for d in days]))
    total = o.total
    return ChartData(
        title=f"Daily spend per model, {first:%B %Y}",
        subtitle=(f"so far {usd(total.month_to_date)} · forecast month-end {usd(total.point)} "
                  f"(80%: {usd(total.low)}–{usd(total.high)})"),
        days=days,
        stacks=stacks,
        forecast=[f for f in digest.forecast_days if f.day in set(days)],
    )


def _label(model: str, limit: int = 36) -> str:
    short = model.rsplit("/", 1)[-1] if not model.startswith(OTHER) else model
    return short if len(short) <= limit else short[: limit - 1] + "…"


def _tex_safe(text: str) -> str:
    """matplotlib reads `$…$` as math; our dollars are money."""
    return text.replace("$", r"\$")


def _boxes(x: list[float], bottoms: list[float], heights: list[float]) -> list[list[tuple[float, float]]]:
    """Bar rectangles as polygons: one collection per series draws far faster than a patch per bar."""
    half = BAR_WIDTH / 2
    return [[(d - half, b), (d - half, b + h), (d + half, b + h), (d + half, b)]
            for d, b, h in zip(x, bottoms, heights) if h > 0]


def spend_chart(digest: Digest, top: int = TOP) -> bytes | None:
    """The chart as PNG bytes, or None when there is nothing to draw."""
    data = chart_data(digest, top)
    if data is None:
        return None
    buffer = io.BytesIO()
    draw_chart(data).savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def draw_chart(data: ChartData) -> "Figure":
    """The chart as a matplotlib `Figure` (with an Agg canvas), ready to save."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 5.2), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.74, top=0.84, bottom=0.11)
    ax = figure.add_subplot()
    x = [float(d.day) for d in data.days]
    bottom = [0.0] * len(x)
    handles = []
    for index, (label, values) in enumerate(data.stacks):
        heights = [float(v) for v in values]
        colour = OTHER_COLOUR if label.startswith(OTHER) else COLOURS[index % len(COLOURS)]
        ax.add_collection(PolyCollection(_boxes(x, bottom, heights), facecolors=colour, edgecolors="none"))
        handles.append(Patch(facecolor=colour, label=_tex_safe(_label(label))))
        bottom = [b + h for b, h in zip(bottom, heights)]
    handles.reverse()  # the legend reads top to bottom, as the stack does
    top_value = max(bottom, default=0.0)

    if data.forecast:
        actual = {d.day: b for d, b in zip(data.days, bottom)}
        fx = [float(f.day.day) for f in data.forecast]
        base = [actual.get(f.day.day, 0.0) for f in data.forecast]
        point = [float(f.point) for f in data.forecast]
        low = [b + float(f.low) for b, f in zip(base, data.forecast)]
        high = [b + float(f.high) for b, f in zip(base, data.forecast)]
        ax.add_collection(PolyCollection(_boxes(fx, base, point), facecolors="none", edgecolors=FORECAST_COLOUR,
                                         linewidths=0.6, hatch="///"))
        ax.add_collection(PolyCollection(_boxes(fx, low, [h - lo for lo, h in zip(low, high)]),
                                         facecolors=FORECAST_COLOUR, alpha=0.15, edgecolors="none"))
        handles.append(Patch(facecolor="none", edgecolor=FORECAST_COLOUR, hatch="///", linewidth=0.6,
                             label="forecast"))
        handles.append(Patch(facecolor=FORECAST_COLOUR, alpha=0.15, label=BAND_LABEL))
        top_value = max([top_value, *high, *(b + p for b, p in zip(base, point))])

    ax.set_xlim(0.4, len(x) + 0.6)
    ax.set_ylim(0, top_value * 1.08 if top_value > 0 else 1)
    ax.set_xticks([d for d in x if d == 1 or d % 5 == 0])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0f}"))
    ax.set_xlabel(f"day of {data.days[0]:%B}")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _tex_safe(f"${value:,.0f}")))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    figure.suptitle(_tex_safe(data.title), x=0.02, ha="left", fontsize=13, fontweight="bold")
    ax.set_title(_tex_safe(data.subtitle), loc="left", fontsize=10, color="#555555")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return figure
