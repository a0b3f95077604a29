"""The won deals a wall celebrates: who won and how much, never the client or the deal. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from metrics.read.won_deals import RecentWin
from metrics.views.kpi_view import MONEY
from salespulse.core.kpi.catalogue import UNASSIGNED
from salespulse.core.staff import display_name

# Wins older than this are no news for a banner (a screen that reconnects says nothing).
RECENT_WINS_S = 600
MAX_WINS = 5


def win_rows(
    wins: Sequence[RecentWin], team: str | None, staff: Mapping[str, str]
) -> list[dict[str, object]]:
    """The newest won deals of the key: manager, name and amount; never the client."""
    rows: list[dict[str, object]] = []
    for win in wins:
        if team is not None and win.team != team:
            continue
        rows.append(
            {
                # An opaque id lets the page celebrate each deal once, without its id.
                "id": hashlib.sha256(win.deal.encode()).hexdigest()[:12],
                "manager": win.manager or None,
                "name": (
                    display_name(staff, win.manager)
                    if win.manager and win.manager != UNASSIGNED
                    else None
                ),
                "amount": None if win.units is None else win.units / MONEY,
                "won_us": win.won_us,
            }
        )
    return rows[:MAX_WINS]
