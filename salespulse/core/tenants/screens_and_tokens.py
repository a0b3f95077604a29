"""A tenant's wall screens and API tokens: who may open what (checked in core/access.py)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field, model_validator

from salespulse.core.tenants.base import FrozenModel, Locale, Secret

WallTile = Literal[
    "revenue", "won", "calls", "conversion", "first_response",
    "waiting", "deals_created", "meetings", "messages", "average_check",
]  # fmt: skip
WallPanel = Literal["waiting", "leaderboard"]
ScreenName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRef(FrozenModel):
    """A token: a secret to read, or only its SHA-256 (hex), so the file never holds it."""

    token: Secret | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_token(self) -> TokenRef:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of `token` or `token_sha256`")
        return self

    def digest(self) -> bytes:
        """The token's SHA-256; reading a secret happens here (a missing one stops the start)."""
        if self.token is not None:
            return token_digest(self.token.reveal().get_secret_value())
        assert self.token_sha256 is not None  # narrowing: validated as one of two
        return bytes.fromhex(self.token_sha256)


class WallScreen(TokenRef):
    """One wall monitor (GET /wall): what it shows, and the read-only token that opens it."""

    title: str | None = None
    # None: the tenant's locale.
    locale: Locale | None = None
    # None: the whole tenant, and the URL may narrow it to any team (`&team=`).
    team: str | None = None
    tiles: tuple[WallTile, ...] = Field(
        default=("revenue", "won", "calls", "conversion", "first_response"),
        min_length=1,
        max_length=8,
    )
    panels: tuple[WallPanel, ...] = ("waiting", "leaderboard")
    leaderboard_by: Literal["revenue", "won", "calls"] = "revenue"
    rows: int = Field(default=8, ge=1, le=30)
    # Other screens of this tenant shown in turn with this one (the token opens them too).
    rotate: list[ScreenName] = Field(default_factory=list)
    rotate_seconds: float = Field(default=30.0, ge=5)
    # A short chime with the banner of a won deal (the TV's browser must allow autoplay).
    celebration_sound: bool = False


class Wall(FrozenModel):
    screens: dict[ScreenName, WallScreen] = Field(default_factory=dict)
    # Manager id → name shown on the wall's leaderboard (staff only; clients never appear).
    names: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rotation_known(self) -> Wall:
        for name, screen in self.screens.items():
            for other in screen.rotate:
                if other not in self.screens:
                    raise ValueError(f"screens.{name}.rotate: no screen {other!r}")
        return self


TokenName = ScreenName  # names one consumer of a tenant (grafana, crm-widget, etl)


class ApiTokens(FrozenModel):
    """Bearer tokens of this tenant's own consumers, by name (salespulse/core/access.py)."""

    # GET /v1/kpis and /v1/waiting of this tenant only.
    read: dict[TokenName, TokenRef] = Field(default_factory=dict)
    # POST /v1/events with this tenant's events only (others: 403).
    ingest: dict[TokenName, TokenRef] = Field(default_factory=dict)
