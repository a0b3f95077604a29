"""What one wall shows for a (tenant, team): tiles, plan and pace, leaderboard, waits. Pure.

A frame is plain JSON for the page. Its *signature* leaves out what moves by itself
(the clock, ticking ages, the pace line), so the hub pushes a frame only when something
a person would see as news has changed; the page ticks the rest on its own.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from metrics.read.grouping import group_components
from metrics.read.kpi_reader import RawSums
from metrics.read.won_deals import RecentWin
from metrics.views.kpi_view import MONEY
from metrics.wall.present import present
from metrics.wall.wins import win_rows
from salespulse.core.business_hours import BusinessCalendar
from salespulse.core.kpi.catalogue import (
    DIMENSIONS,
    RESPONSE_BUCKETS_S,
    TOTAL_GROUP,
    UNASSIGNED,
)
from salespulse.core.staff import display_name, staff_names
from salespulse.core.tenants import Target, TenantConfig

_TEAM = DIMENSIONS.index("team")
_MANAGER = DIMENSIONS.index("manager")
# The page shows at most this many of each list (rows are a per-screen setting below it).
MAX_WAITS = 50
MAX_LEADERS = 50
_STATES = ("ok", "at_risk", "breached")


@dataclass(frozen=True)
class WallKey:
    """What a frame is computed for; every screen showing it shares one poller."""

    tenant: str
    team: str | None
    # The language its strings are formatted in: a key per locale shown.
    locale: str = "en"

    @property
    def name(self) -> str:
        return self.team if self.team is not None else "*"


@dataclass(frozen=True)
class Frame:
    payload: dict[str, object]
    signature: bytes

    def encode(self) -> bytes:
        return msgspec.json.encode(self.payload)


@dataclass(frozen=True)
class FirstResponse:
    """Today's first-response times of the key: median (seconds) and how many replies."""

    median_s: float | None
    count: int


def first_response(sums: RawSums, basis: str) -> FirstResponse:
    """Median first-response time of the replies in the sums, from their histogram.

    Interpolated inside its bucket as Prometheus' histogram_quantile does, so the tile
    and a Grafana panel over salespulse_first_response_seconds agree.
    """
    mark = "c" if basis == "calendar" else "b"
    hist: dict[int, int] = {}
    for (component, _), amount in sums.items():
        if component.startswith("resp_hist:first:"):
            bucket = component.rpartition(":")[2]
            if bucket[:1] == mark:
                hist[int(bucket[1:])] = hist.get(int(bucket[1:]), 0) + amount
    count = sum(amount for amount in hist.values() if amount > 0)
    if count == 0:
        return FirstResponse(None, 0)
    rank, running = count / 2, 0
    for index in sorted(hist):
        amount = max(hist[index], 0)
        if running + amount >= rank and amount:
            if index >= len(RESPONSE_BUCKETS_S):
                return FirstResponse(float(RESPONSE_BUCKETS_S[-1]), count)
            lower = float(RESPONSE_BUCKETS_S[index - 1]) if index else 0.0
            upper = float(RESPONSE_BUCKETS_S[index])
            return FirstResponse(lower + (upper - lower) * (rank - running) / amount, count)
        running += amount
    return FirstResponse(float(RESPONSE_BUCKETS_S[-1]), count)


def only_team(sums: RawSums, team: str | None) -> RawSums:
    if team is None:
        return sums
    return {key: amount for key, amount in sums.items() if key[1][_TEAM] == team}


def day_progress(now: datetime, config: TenantConfig, hours: BusinessCalendar | None) -> float:
    """Share of today's selling time gone: of the open hours with a calendar, else of the day."""
    zone = config.zone
    day = now.astimezone(zone).date()
    if hours is not None:
        intervals = hours.open_intervals(day)
        total = sum((end - start).total_seconds() for start, end in intervals)
        if total > 0:
            gone = sum(
                (min(end, now) - start).total_seconds() for start, end in intervals if now > start
            )
            return min(1.0, gone / total)
        return 1.0  # a closed day: nothing more is expected today
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return (now - start).total_seconds() / (end - start).total_seconds()


def month_share_of_today(
    now: datetime, config: TenantConfig, hours: BusinessCalendar | None
) -> float:
    """Today's share of the month's plan: one working day of the month's working days."""
    day = now.astimezone(config.zone).date()
    length = calendar.monthrange(day.year, day.month)[1]
    if hours is None:
        return 1 / length
    days = [day.replace(day=n) for n in range(1, length + 1)]
    working = [d for d in days if not hours.is_closed_day(d)]
    if day not in working:
        return 0.0
    return 1 / len(working)


def plan_of(config: TenantConfig, team: str | None) -> Target | None:
    """The monthly target of a team (or of the tenant): its own, else its members' summed."""
    targets = config.targets
    if team is not None and team in targets.teams:
        return targets.teams[team]
    if team is None and targets.teams:
        return _summed(targets.teams.values())
    members = (
        config.teams[team].managers
        if team is not None and team in config.teams
        else (list(targets.managers) if team is None else [])
    )
    chosen = [targets.managers[m] for m in members if m in targets.managers]
    return _summed(chosen) if chosen else None


def _summed(targets: Iterable[Target]) -> Target:
    revenue = [t.revenue for t in targets if t.revenue is not None]
    won = [t.deals_won for t in targets if t.deals_won is not None]
    return Target(
        revenue=sum(revenue) if revenue else None,
        deals_won=sum(won) if won else None,
    )


def build_frame(
    key: WallKey,
    config: TenantConfig,
    now: datetime,
    today: RawSums,
    month: RawSums,
    *,
    waiting: Sequence[Mapping[str, object]] | None = None,
    wins: Sequence[RecentWin] = (),
    names: Mapping[str, str] | None = None,
) -> Frame:
    """The frame of one key from today's and this month's stored sums (whole tenant),
    with every number also formatted in the key's locale (``text``, metrics/wall/present.py).
    ``names``: manager id → display name (metrics/read/staff.py); None: the tenants
    file's own (no CRM names)."""
    if names is None:
        names = staff_names(config, {})
    hours = config.calendar_for(key.team)
    today_sums = only_team(today, key.team)
    replies = first_response(today_sums, config.sla.basis or config.default_basis)
    total = group_components(today_sums, None)[TOTAL_GROUP]
    month_total = group_components(only_team(month, key.team), None)[TOTAL_GROUP]
    won, lost = total.get("won", 0), total.get("lost", 0)
    kpis: dict[str, object] = {
        "revenue": total.get("revenue", 0) / MONEY,
        "won": won,
        "lost": lost,
        "calls": total.get("calls", 0),
        "calls_answered": total.get("calls_answered", 0),
        "messages": total.get("messages_in", 0) + total.get("messages_out", 0),
        "meetings": total.get("meetings", 0),
        "deals_created": total.get("deals_created", 0),
        "average_check": (
            total.get("revenue", 0) / MONEY / (won - total.get("unconvertible_amounts", 0))
            if won - total.get("unconvertible_amounts", 0) > 0
            else None
        ),
        "conversion": {
            "value": won / (won + lost) if won + lost else None,
            "numerator": won,
            "denominator": won + lost,
        },
        "first_response": {"median_seconds": replies.median_s, "count": replies.count},
    }
    progress = day_progress(now, config, hours)
    plan = _plan(config, key.team, now, hours, progress, month_total)
    month_groups = group_components(only_team(month, key.team), "manager")
    leaders = _leaderboard(today_sums, month_groups, config, key.team, names)
    waits = _waits(waiting, config, now, names) if waiting is not None else None
    won_rows = win_rows(wins, key.team, names)
    stable = {
        "kpis": kpis,
        "plan": plan["stable"],
        "leaders": leaders,
        "waiting": None if waits is None else waits[1],
        "wins": won_rows,
    }
    payload: dict[str, object] = {
        "key": key.name,
        "team": key.team,
        "team_name": config.team_name(key.team) if key.team else None,
        "at": now.isoformat(),
        "day_progress": round(progress, 4),
        "kpis": kpis,
        "plan": plan["shown"],
        "leaders": leaders,
        "waiting": None if waits is None else waits[0],
        "wins": won_rows,
    }
    shown = present(payload, key.locale, config.currency, today=now.astimezone(config.zone).date())
    return Frame(shown, msgspec.json.encode(stable))


def _plan(
    config: TenantConfig,
    team: str | None,
    now: datetime,
    hours: BusinessCalendar | None,
    progress: float,
    month_total: Mapping[str, int],
) -> dict[str, object]:
    target = plan_of(config, team)
    share = month_share_of_today(now, config, hours)
    shown: dict[str, object] = {
        "revenue_month": month_total.get("revenue", 0) / MONEY,
        "won_month": month_total.get("won", 0),
    }
    stable = dict(shown)
    for name, monthly in (
        ("revenue", None if target is None else target.revenue),
        ("won", None if target is None else target.deals_won),
    ):
        if monthly is None:
            continue
        today_plan = float(monthly) * share
        shown[f"{name}_month_plan"] = stable[f"{name}_month_plan"] = float(monthly)
        shown[f"{name}_today_plan"] = stable[f"{name}_today_plan"] = round(today_plan, 2)
        # The pace line moves by itself: shown, but no reason to push a frame.
        shown[f"{name}_today_pace"] = round(today_plan * progress, 2)
    return {"shown": shown, "stable": stable}


def _leaderboard(
    sums: RawSums,
    month: Mapping[str, Mapping[str, int]],
    config: TenantConfig,
    team: str | None,
    staff: Mapping[str, str],
) -> list[dict[str, object]]:
    """Today's rows per manager, each with the month so far against the monthly target.

    ``progress`` is what /v1/kpis?window=month&by=manager calls plan_attainment: of the
    revenue target when there is one, else of the deals-won target."""
    groups = group_components(sums, "manager")
    members = (
        config.teams[team].managers
        if team is not None and team in config.teams
        else ([m for t in config.teams.values() for m in t.managers] if team is None else [])
    )
    names = set(members) | {name for name in groups if name != TOTAL_GROUP}
    rows: list[dict[str, object]] = []
    for manager in names:
        group = groups.get(manager, {})
        if manager not in members and not any(group.get(k) for k in ("revenue", "won", "calls")):
            # Not a team member and nothing to rank: e.g. the office's ad spend, which is
            # nobody's ("unassigned"), would be a permanent empty row.
            continue
        so_far = month.get(manager, {})
        target = config.targets.managers.get(manager)
        progress, of = None, None
        if target is not None and target.revenue:
            progress, of = so_far.get("revenue", 0) / MONEY / float(target.revenue), "revenue"
        elif target is not None and target.deals_won:
            progress, of = so_far.get("won", 0) / target.deals_won, "deals_won"
        rows.append(
            {
                "manager": manager,
                # None: no manager (the page says so in its language)
                "name": None if manager == UNASSIGNED else display_name(staff, manager),
                "revenue": group.get("revenue", 0) / MONEY,
                "won": group.get("won", 0),
                "calls": group.get("calls", 0),
                "month_revenue": so_far.get("revenue", 0) / MONEY,
                "month_won": so_far.get("won", 0),
                "progress": None if progress is None else round(progress, 4),
                "progress_of": of,
            }
        )
    rows.sort(key=lambda r: (-_num(r["revenue"]), -_num(r["won"]), -_num(r["calls"]), r["manager"]))
    return rows[:MAX_LEADERS]


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _waits(
    entries: Sequence[Mapping[str, object]],
    config: TenantConfig,
    now: datetime,
    staff: Mapping[str, str],
) -> tuple[dict[str, object], dict[str, object]]:
    """What the page needs of each wait, oldest first; never the client or conversation id.

    The page ticks an age on its own while its clock runs: always for a calendar age, and
    for a business age while the team's calendar is open now. An age that stands still
    (business hours closed) is no news; the frame that stops or restarts it is.
    """
    open_now: dict[str | None, bool] = {}

    def ticks(basis: str, team: str | None) -> bool:
        if basis == "calendar":
            return True
        if team not in open_now:
            hours = config.calendar_for(team)
            open_now[team] = hours is None or hours.is_open(now)
        return open_now[team]

    ordered = sorted(entries, key=lambda e: -_num(e.get("age_seconds")))
    shown, stable = [], []
    counts = dict.fromkeys(_STATES, 0)
    for entry in ordered:
        state = str(entry.get("state", "ok"))
        if state in counts:
            counts[state] += 1
    for entry in ordered[:MAX_WAITS]:
        manager = entry.get("manager")
        basis = str(entry.get("basis", "calendar"))
        age = _num(entry.get("business_age_seconds" if basis == "business" else "age_seconds"))
        # An opaque row key lets the page keep a row's place without knowing the id.
        row_id = hashlib.sha256(str(entry.get("conversation", "")).encode()).hexdigest()[:12]
        row: dict[str, object] = {
            "id": row_id,
            "channel": entry.get("channel"),
            "kind": entry.get("kind"),
            "manager": manager,
            "name": display_name(staff, str(manager)) if manager else None,
            "basis": basis,
            "age_seconds": round(age, 1),
            "target_seconds": entry.get("target_seconds"),
            "at_risk_seconds": entry.get("at_risk_seconds"),
            "state": entry.get("state", "ok"),
            "ticking": ticks(basis, str(entry["team"]) if entry.get("team") else None),
        }
        shown.append(row)
        stable.append({k: v for k, v in row.items() if k != "age_seconds"})
    body: dict[str, object] = {"count": len(ordered), **counts, "entries": shown}
    return body, {**counts, "count": len(ordered), "entries": stable}
