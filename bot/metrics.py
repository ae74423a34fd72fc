"""Prometheus metrics in the text exposition format, kept in process (no extra dependency)."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts, latency histograms, job outcomes and scheduler loop passes; render() adds
    database gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.jobs: dict[tuple[str, str], int] = defaultdict(int)
        self.loops: dict[str, int] = defaultdict(int)

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            counts = self.latency[name]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.latency_sum[name] += seconds

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - start)

    def count_job(self, job: str, outcome: str) -> None:
        with self._lock:
            self.jobs[(job, outcome)] += 1

    def count_loop(self, loop: str) -> None:
        """One finished pass of a scheduler loop (`catch-up`, `outbox`): shows each replica's loops are alive."""
        with self._lock:
            self.loops[loop] += 1

    def render(self, context: Any = None) -> str:
        """The exposition text; database gauges are best-effort (a down database does not fail it)."""
        lines = ["# TYPE budget_guard_requests_total counter"]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'budget_guard_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines.append("# TYPE budget_guard_request_seconds histogram")
            for name, counts in sorted(self.latency.items()):
                for bound, n in zip(BUCKETS, counts):
                    lines.append(f'budget_guard_request_seconds_bucket{{endpoint="{name}",le="{bound}"}} {n}')
                lines.append(f'budget_guard_request_seconds_bucket{{endpoint="{name}",le="+Inf"}} {counts[-1]}')
                lines.append(f'budget_guard_request_seconds_sum{{endpoint="{name}"}} {self.latency_sum[name]:.6f}')
                lines.append(f'budget_guard_request_seconds_count{{endpoint="{name}"}} {counts[-1]}')
            lines.append("# TYPE budget_guard_jobs_total counter")
            for (job, outcome), n in sorted(self.jobs.items()):
                lines.append(f'budget_guard_jobs_total{{job="{job}",outcome="{outcome}"}} {n}')
            lines.append("# TYPE budget_guard_scheduler_loops_total counter")
            for loop, n in sorted(self.loops.items()):
                lines.append(f'budget_guard_scheduler_loops_total{{loop="{loop}"}} {n}')
        if context is not None:
            lines.extend(database_gauges(context))
        return "\n".join(lines) + "\n"


def database_gauges(context: Any) -> list[str]:
    """Outbox depth, the messages Slack refused for good (by reason) and each source's lag, read
    from the database, so every replica reports the same."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from db.models import SourceState
    from jobs.runtime.outbox_operator import failures_by_reason, pending_count

    try:
        with context.sessions() as session:
            depth = pending_count(session)
            failures = failures_by_reason(session)
            states = session.scalars(select(SourceState)).all()
    except Exception:
        return ["# database unavailable"]
    now = datetime.now(timezone.utc)
    lines = ["# TYPE budget_guard_outbox_depth gauge", f"budget_guard_outbox_depth {depth}",
             "# TYPE budget_guard_outbox_failed gauge"]
    lines.extend(f'budget_guard_outbox_failed{{reason="{re.sub(r"[^A-Za-z0-9_.:-]", "_", reason)}"}} {n}'
                 for reason, n in sorted(failures.items()))
    lines.append("# TYPE budget_guard_source_lag_seconds gauge")
    for state in states:
        if state.last_success is not None:
            lag = (now - state.last_success).total_seconds()
            lines.append(f'budget_guard_source_lag_seconds{{source="{state.name}"}} {lag:.0f}')
    return lines
