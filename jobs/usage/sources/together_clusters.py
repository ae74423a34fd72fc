"""together.ai GPU clusters as spend: `num_gpus` GPUs of `gpu_type` at the GPU-hour rate, for
every minute the cluster is up.

`GET /v1/compute/clusters` lists the clusters (`GPUClusters.clusters`, each a `GPUClusterInfo`).
A cluster is up (billed) while its status is Ready or Degraded; while it is being provisioned,
paused or deleted it is not counted. Minutes are counted per observation
(`jobs.usage.sources.uptime`), never before the cluster's `created_at`. Each hour becomes a ledger
row of mode "cluster" with `uptime_minutes` in GPU-minutes, model "GPU_TYPE cluster", tagged
`cluster=NAME,gpu_type=GPU_TYPE`, costed at the rate of `pricing.clusters` (our hardware
table, or the operator's `[[cluster_rates]]`); a gpu_type without a rate stays unpriced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.engine import transaction
from db.ledger import BucketRow, add_buckets
from db.models import to_nanos
from db.prices import price_row_id
from db.source_state import record_source_cursor
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.usage.sources import PullResult, RetryPolicy, SchemaError, api_root, client_for
from jobs.usage.sources.together import optional_time, tag_value, together_key
from jobs.usage.sources.uptime import counted_since, locked_cursor, minutes_by_hour, whole_minute
from jobs.usage.validation import storable
from pricing.clusters import GpuHourRate, cluster_rates
from pricing.costs import cluster_quote

UP = frozenset({"Ready", "Degraded"})
MAX_GPUS = 100_000


@dataclass(frozen=True)
class Cluster:
    """A GPU cluster as observed now."""

    id: str
    name: str
    gpu_type: str
    num_gpus: int
    status: str
    created_at: datetime | None

    @property
    def model(self) -> str:
        return f"{self.gpu_type} cluster"


def parse_clusters(payload: Any) -> list[Cluster]:
    """The clusters of `GET /v1/compute/clusters`, checked for the fields we read."""
    if not isinstance(payload, dict) or not isinstance(payload.get("clusters"), list):
        raise SchemaError("expected an object with a clusters list")
    clusters = []
    for item in payload["clusters"]:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k]
                                                 for k in ("cluster_id", "gpu_type", "status")):
            raise SchemaError("a cluster lacks cluster_id, gpu_type or status")
        gpus = item.get("num_gpus")
        if type(gpus) is not int or not 0 <= gpus <= MAX_GPUS:
            raise SchemaError(f"cluster {item['cluster_id'][:80]}: num_gpus is not a count of GPUs")
        clusters.append(Cluster(
            id=item["cluster_id"][:160],
            name=str(item.get("cluster_name") or item["cluster_id"])[:160],
            gpu_type=storable(item["gpu_type"], 64),
            num_gpus=gpus,
            status=item["status"],
            created_at=optional_time(item.get("created_at"), "created_at"),
        ))
    return clusters


def cluster_rows(cluster: Cluster, since: datetime, until: datetime, rate: GpuHourRate | None) -> list[BucketRow]:
    """Hour buckets of the cluster's GPU-minutes in [since, until), both whole minutes."""
    rows = []
    tags = f"cluster={tag_value(cluster.name)},gpu_type={tag_value(cluster.gpu_type)}"[:512]
    for hour, minutes in minutes_by_hour(cluster.created_at, since, until):
        gpu_minutes = minutes * cluster.num_gpus
        if gpu_minutes == 0:
            continue
        cost = cluster_quote(cluster.num_gpus, Decimal(minutes) / 60, rate.hourly).cost if rate else None
        rows.append(BucketRow(
            bucket_start=hour, width="1h", model=cluster.model, mode="cluster", tags=tags,
            uptime_minutes=gpu_minutes, cost_nanos=to_nanos(cost) if cost is not None else None,
        ))
    return rows


def pull_together_clusters(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Observe the clusters now and add the GPU-minutes of those up since the last observation."""
    sessions, settings = context.sessions, context.settings
    key = together_key(source, settings)
    with client_for(source, key, retry) as client:
        clusters = client.get_json(f"{api_root(source.base_url)}/v1/compute/clusters", None, parse_clusters)
    rates = cluster_rates((r.gpu_type, r.hourly) for r in settings.cluster_rates)
    observed = whole_minute(now)
    unpriced: set[str] = set()
    with transaction(sessions) as session:
        previous = locked_cursor(session, source.name)
        since = counted_since(previous, source, observed)
        rows: list[BucketRow] = []
        for cluster in clusters:
            if cluster.status not in UP:
                continue
            rate = rates.get(cluster.gpu_type.upper())
            found = cluster_rows(cluster, since, observed, rate)
            if rate is None and found:
                unpriced.add(cluster.gpu_type)
            elif rate is not None and found:
                price_id = price_row_id(
                    session, provider="together", model=rate.gpu_type, mode="cluster", source=rate.source,
                    effective_from=None, input_rate=Decimal(0), cached_rate=Decimal(0), output_rate=Decimal(0),
                    minute_rate=rate.per_minute,
                )
                for row in found:
                    row.price_id = price_id
            rows.extend(found)
        written = add_buckets(session, source.name, rows)
        record_source_cursor(session, source.name, max(observed, previous or observed))
    notes = tuple(f"no GPU-hour rate for {gpu_type}: its GPU-minutes are unpriced (set [[cluster_rates]])"
                  for gpu_type in sorted(unpriced))
    newest = max((r.bucket_start for r in rows), default=None)
    return PullResult(source.name, since, observed, 1, written, newest, notes=notes)
