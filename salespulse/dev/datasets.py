"""Public CRM data sets → canonical events (JSON lines), for replays, demos and benchmarks.

The data sets are not part of the project (download them from their publishers; the tests
carry a small public-domain slice in tests/data/); this converts them. People's
and companies' names become stable pseudonymous ids: no name reaches an event.

* ``maven-crm``: Maven Analytics "CRM Sales Opportunities" (fictitious B2B pipeline,
  2016-2017): each opportunity becomes deal_created + stage moves + won/lost.
* ``olist-funnel``: Olist "Marketing Funnel" (real, anonymised, 2017-2018): each MQL
  becomes lead_created; each closed deal a won deal linked to its lead.

Dates are read as the data states them. A date without a time (Maven's engage and close
dates, Olist's first contact) is that day at 12:00 UTC, every one alike, so a span between
two of them is a whole number of days, as the data has it (Maven's won deals: 51.78 days
on average; reading the engage date at 09:00 and the close date at 16:00 made it 52.07).
A timestamp without a zone (Olist's won_date) is read as UTC: the data names no zone.
What cannot become an event is skipped and counted, by reason, in a ``Conversion``
(``salespulse dataset`` prints it), never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAVEN_PIPELINE = ("prospecting", "engaging", "won", "lost")
# Olist's MQLs with an empty origin keep it as their own value: "unknown" is a value the
# data has too (1,099 MQLs), and merging the 60 blank ones into it changed its counts.
BLANK_ORIGIN = "(blank)"
DATE_ONLY_HOUR = 12
MAVEN_UNDATED = "deals without an engage date (prospecting, no date in the data)"


@dataclass
class Conversion:
    """What a converter skipped, by reason (reason → rows)."""

    skipped: Counter[str] = field(default_factory=Counter)

    def render(self) -> list[str]:
        return [f"skipped {count:,} {reason}" for reason, count in sorted(self.skipped.items())]


def pseudonym(kind: str, name: str) -> str:
    """A stable short id for a name; the name itself is never kept."""
    return f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _day(text: str) -> datetime | None:
    """A date-only text as that day at 12:00 UTC (module docstring)."""
    if not text:
        return None
    day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return day.replace(hour=DATE_ONLY_HOUR)


def maven_crm(
    directory: Path, tenant: str = "maven", conversion: Conversion | None = None
) -> Iterator[dict[str, Any]]:
    """Opportunities of the Maven CRM pipeline, in file order. The 500 prospecting deals
    without any date are skipped and counted in ``conversion``: a creation time would
    have to be invented, and an invented one would move every time-windowed KPI."""
    report = conversion if conversion is not None else Conversion()
    teams = {}
    with (directory / "sales_teams.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            teams[row["sales_agent"]] = pseudonym("team", row["manager"])
    with (directory / "sales_pipeline.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            deal = f"opp-{row['opportunity_id']}"
            common = {
                "tenant": tenant,
                "source": "maven-crm",
                "entity_id": deal,
                "pipeline": "sales",
                "manager_id": pseudonym("agent", row["sales_agent"]),
                "team": teams.get(row["sales_agent"]),
                "client_id": pseudonym("account", row["account"]) if row["account"] else None,
                "source_channel": row["product"].replace(" ", "_").lower() or None,
            }
            common = {k: v for k, v in common.items() if v is not None}
            engaged, closed = _day(row["engage_date"]), _day(row["close_date"])
            stage = row["deal_stage"].lower()
            if engaged is None:  # prospecting, no dates yet: nothing happened in time
                report.skipped[MAVEN_UNDATED] += 1
                continue
            yield {
                **common,
                "event_id": f"{deal}-created",
                "type": "deal_created",
                "occurred_at": engaged.isoformat(),
            }
            yield {
                **common,
                "event_id": f"{deal}-engaging",
                "type": "deal_stage_changed",
                "stage_to": "engaging",
                "occurred_at": engaged.isoformat(),
            }
            if stage in ("won", "lost") and closed is not None:
                closing: dict[str, Any] = {"stage_to": stage, "stage_kind": stage}
                if stage == "won":
                    closing.update(amount=row["close_value"] or "0", currency="USD")
                yield {
                    **common,
                    **closing,
                    "event_id": f"{deal}-{stage}",
                    "type": "deal_stage_changed",
                    "occurred_at": closed.isoformat(),
                }


def olist_funnel(
    directory: Path, tenant: str = "olist", conversion: Conversion | None = None
) -> Iterator[dict[str, Any]]:
    """Olist MQLs as leads, then closed deals as won deals of those leads."""
    report = conversion if conversion is not None else Conversion()
    sources: dict[str, str] = {}
    with (directory / "olist_marketing_qualified_leads_dataset.csv").open(
        newline="", encoding="utf-8"
    ) as handle:
        for row in csv.DictReader(handle):
            source = row["origin"] or BLANK_ORIGIN
            sources[row["mql_id"]] = source
            contacted = _day(row["first_contact_date"])
            if contacted is None:
                report.skipped["MQLs without a first contact date"] += 1
                continue
            yield {
                "tenant": tenant,
                "source": "olist",
                "event_id": f"mql-{row['mql_id']}",
                "type": "lead_created",
                "entity_id": f"mql-{row['mql_id']}",
                "source_channel": source,
                "occurred_at": contacted.isoformat(),
            }
    with (directory / "olist_closed_deals_dataset.csv").open(
        newline="", encoding="utf-8"
    ) as handle:
        for row in csv.DictReader(handle):
            won = datetime.strptime(row["won_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            deal = f"deal-{row['mql_id']}"
            common = {
                "tenant": tenant,
                "source": "olist",
                "entity_id": deal,
                "pipeline": "sellers",
                "manager_id": f"sr-{row['sr_id'][:10]}",
                "lead_id": f"mql-{row['mql_id']}",
                "client_id": f"seller-{row['seller_id'][:10]}",
                "source_channel": sources.get(row["mql_id"], "unknown"),
            }
            yield {
                **common,
                "event_id": f"{deal}-created",
                "type": "deal_created",
                "occurred_at": won.isoformat(),
            }
            yield {
                **common,
                "event_id": f"{deal}-won",
                "type": "deal_stage_changed",
                "stage_to": "won",
                "stage_kind": "won",
                "occurred_at": won.isoformat(),
                "amount": row["declared_monthly_revenue"] or "0",
                "currency": "BRL",
            }


Converter = Callable[[Path, str, Conversion], Iterator[dict[str, Any]]]
CONVERTERS: dict[str, Converter] = {"maven-crm": maven_crm, "olist-funnel": olist_funnel}
DEFAULT_TENANTS = {"maven-crm": "maven", "olist-funnel": "olist"}
