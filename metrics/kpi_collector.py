"""KPI metrics read from Redis at scrape time (a custom collector, no state of its own).

All-time KPIs are counters (``salespulse_calls_total``); calendar windows are gauges with
a ``window`` label (``salespulse_window_calls{window="today"}``), because a window's value
falls back to zero when the window rolls over. ``today`` is the tenant's own calendar day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from salespulse.kpi_keys import DURATION_SCALE, MONEY_SCALE, KpiKeys, decode_field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KpiSeries:
    field: str  # first element of the Redis field
    name: str  # metric name without salespulse_ prefix and _total suffix
    help: str
    dimensions: tuple[str, ...]  # labels after tenant, in field order
    scale: int = 1


CATALOGUE: tuple[KpiSeries, ...] = (
    KpiSeries(
        "calls", "calls", "Calls by direction and outcome.", ("manager", "direction", "outcome")
    ),
    KpiSeries(
        "talk_time_ms",
        "call_talk_time_seconds",
        "Talk time of answered calls.",
        ("manager",),
        DURATION_SCALE,
    ),
    KpiSeries(
        "messages",
        "messages",
        "Chat, e-mail and messenger messages by direction (bot and auto-replies excluded).",
        ("manager", "direction"),
    ),
    KpiSeries("leads_created", "leads_created", "New leads.", ("manager",)),
    KpiSeries("deals_created", "deals_created", "New deals.", ("manager",)),
    KpiSeries("deals_won", "deals_won", "Deals that entered a won stage.", ("manager",)),
    KpiSeries(
        "revenue",
        "revenue",
        "Amount of won deals, in the deal's currency.",
        ("manager", "currency"),
        MONEY_SCALE,
    ),
    KpiSeries(
        "stage_entries",
        "stage_entries",
        "Deals entering each pipeline stage.",
        ("manager", "pipeline", "stage"),
    ),
)
_BY_FIELD = {series.field: series for series in CATALOGUE}
WINDOWS = ("today",)


class KpiCollector(Collector):
    """Reads every tenant's KPI hashes in one pipelined round trip per scrape."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KpiKeys,
        zone_for: Callable[[str], ZoneInfo],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._zone_for = zone_for
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        # Describing without samples keeps registration from touching Redis.
        totals, windows = self._families()
        yield from totals.values()
        yield from windows.values()
        yield GaugeMetricFamily("salespulse_kpi_store_up", "1 if Redis answered this scrape.")

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("salespulse_kpi_store_up", "1 if Redis answered this scrape.")
        try:
            snapshot = self._read()
        except RedisError as exc:
            logger.warning("KPI store unreachable during scrape: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        totals, windows = self._families()
        for tenant, all_time, by_window in snapshot:
            _add_samples(totals, tenant, all_time, window=None)
            for window, values in by_window.items():
                _add_samples(windows, tenant, values, window=window)
        yield from totals.values()
        yield from windows.values()

    def _read(self) -> list[tuple[str, dict[bytes, bytes], dict[str, dict[bytes, bytes]]]]:
        members = self._client.smembers(self._keys.tenants)
        tenants = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        now = self._clock()
        pipe = self._client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.hgetall(self._keys.all_time(tenant))
            today = datetime.fromtimestamp(now, self._zone_for(tenant)).date().isoformat()
            pipe.hgetall(self._keys.day(tenant, today))
        replies = pipe.execute()
        return [
            (tenant, replies[2 * i], {"today": replies[2 * i + 1]})
            for i, tenant in enumerate(tenants)
        ]

    @staticmethod
    def _families() -> tuple[dict[str, CounterMetricFamily], dict[str, GaugeMetricFamily]]:
        totals = {
            s.field: CounterMetricFamily(
                f"salespulse_{s.name}",
                f"{s.help} All time, event time.",
                labels=("tenant", *s.dimensions),
            )
            for s in CATALOGUE
        }
        windows = {
            s.field: GaugeMetricFamily(
                f"salespulse_window_{s.name}",
                f"{s.help} Within the calendar window.",
                labels=("tenant", *s.dimensions, "window"),
            )
            for s in CATALOGUE
        }
        return totals, windows


def _add_samples(
    families: dict[str, CounterMetricFamily] | dict[str, GaugeMetricFamily],
    tenant: str,
    values: dict[bytes, bytes],
    *,
    window: str | None,
) -> None:
    for raw_field, raw_value in values.items():
        parts = decode_field(raw_field)
        series = _BY_FIELD.get(parts[0])
        if series is None or len(parts) != len(series.dimensions) + 1:
            continue  # written by a newer version; not ours to expose
        labels: Sequence[str] = (tenant, *parts[1:])
        if window is not None:
            labels = (*labels, window)
        families[series.field].add_metric(list(labels), int(raw_value) / series.scale)
