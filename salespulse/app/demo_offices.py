"""The demo's offices (`salespulse run --demo --demo-locale uk|ru|en`): who works there, in
which currency they sell, how busy they are, and the tenants file that goes with them.

Each office has ten telesales managers in two teams. A manager makes 40 to 80 calls and
wins two to four deals a day (a few a day, as in a real telesales office), at an average
check typical for the office's market. The demo spreads each day's work over 24 hours, so
that the wall moves at any hour of the demo and a day's totals are a real office's day.
Monthly plans are in whole deals (the daily rate over 30 days) and the revenue they bring
at the average check. Leads come from the website (paid: its ad spend is posted daily,
sized for a return on marketing of about 250 %), from referrals and from cold calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import yaml

DemoLocale = Literal["en", "uk", "ru"]
LOCALES: Final[tuple[DemoLocale, ...]] = ("en", "uk", "ru")
TENANT: Final = "demo"
DEMO_TENANTS: Final = Path(__file__).with_name("demo_tenants.yaml")

MANAGERS: Final = tuple(f"m-{n}" for n in range(101, 111))
TEAMS: Final = {"team-a": MANAGERS[:5], "team-b": MANAGERS[5:]}
# Per manager: calls a day (40 to 80) and deals won a day (a few).
CALLS_PER_DAY: Final = dict(zip(MANAGERS, (72, 64, 58, 77, 45, 69, 52, 60, 48, 66), strict=True))
WINS_PER_DAY: Final = dict(zip(MANAGERS, (4, 3, 3, 4, 2, 3, 2, 3, 2, 3), strict=True))
# Messages a day per manager: follow-ups sent, and clients writing first (they get a reply).
MESSAGES_OUT_PER_DAY: Final = 30
MESSAGES_IN_PER_DAY: Final = 20
PLAN_DAYS: Final = 30
# Share of new leads by source; only the website is paid for.
LEAD_SOURCES: Final = (("website", 0.6), ("referral", 0.25), ("cold_call", 0.15))
TARGET_ROMI: Final = 2.5  # (revenue - cost) / cost of the website's leads
MAX_SPEED: Final = 100.0  # DemoTraffic posts at most about one event per tick


@dataclass(frozen=True)
class DemoOptions:
    """`salespulse run --demo --demo-locale … --demo-speed …`."""

    locale: DemoLocale = "en"
    speed: float = 1.0


@dataclass(frozen=True)
class Office:
    locale: DemoLocale
    currency: str
    timezone: str
    # A won deal's amount: uniform between these, rounded to `step` (prices end in zeros).
    check_low: int
    check_high: int
    step: int
    names: tuple[str, ...]  # one per manager, in MANAGERS order
    title: str

    @property
    def average_check(self) -> Decimal:
        return Decimal(self.check_low + self.check_high) / 2

    @property
    def wins_per_day(self) -> int:
        return sum(WINS_PER_DAY.values())

    def ad_spend_per_day(self) -> Decimal:
        website = next(share for source, share in LEAD_SOURCES if source == "website")
        revenue = Decimal(str(website)) * self.wins_per_day * self.average_check
        return round_to(revenue / Decimal(str(1 + TARGET_ROMI)), self.step * 10)


def round_to(value: Decimal, step: int) -> Decimal:
    """``value`` to the nearest multiple of ``step`` (a plan or a budget in round figures)."""
    return (value / step).to_integral_value() * step


OFFICES: Final[dict[DemoLocale, Office]] = {
    "en": Office(
        "en", "USD", "America/New_York", 300, 2500, 10,
        ("Anna Brooks", "Ben Carter", "Chloe Davis", "Daniel Evans", "Emma Foster",
         "Frank Garcia", "Grace Harris", "Henry Irving", "Isla Johnson", "Jack Kelly"),
        "Sales floor",
    ),
    "uk": Office(
        "uk", "UAH", "Europe/Kyiv", 15_000, 95_000, 500,
        ("Олена Коваленко", "Андрій Шевченко", "Ірина Бондаренко", "Дмитро Ткаченко",
         "Наталія Кравченко", "Сергій Мельник", "Юлія Олійник", "Олександр Поліщук",
         "Марія Савченко", "Богдан Литвиненко"),
        "Відділ продажів",
    ),
    "ru": Office(
        "ru", "RUB", "Europe/Moscow", 30_000, 190_000, 1000,
        ("Анна Смирнова", "Дмитрий Иванов", "Екатерина Кузнецова", "Алексей Попов",
         "Ольга Соколова", "Сергей Лебедев", "Мария Новикова", "Андрей Морозов",
         "Татьяна Волкова", "Михаил Козлов"),
        "Отдел продаж",
    ),
}  # fmt: skip


def monthly_targets(office: Office) -> dict[str, Any]:
    """Whole deals a month per manager and team, and the revenue they bring."""

    def target(deals: int) -> dict[str, Any]:
        revenue = round_to(office.average_check * deals, office.step * 100)
        return {"revenue": str(revenue), "deals_won": deals}

    managers = {m: target(WINS_PER_DAY[m] * PLAN_DAYS) for m in MANAGERS}
    teams = {
        team: target(sum(WINS_PER_DAY[m] for m in members) * PLAN_DAYS)
        for team, members in TEAMS.items()
    }
    return {"managers": managers, "teams": teams}


def demo_tenants_text(locale: DemoLocale) -> str:
    """The demo's tenants file for one office: demo_tenants.yaml (pipeline, SLA, screens,
    the data-set tenants) with the office's currency, zone, locale, people and plans."""
    office = OFFICES[locale]
    document = yaml.safe_load(DEMO_TENANTS.read_text(encoding="utf-8"))
    demo = document["tenants"][TENANT]
    demo.update(
        currency=office.currency,
        timezone=office.timezone,
        locale=office.locale,
        teams={team: {"managers": list(members)} for team, members in TEAMS.items()},
        targets=monthly_targets(office),
        managers=dict(zip(MANAGERS, office.names, strict=True)),
    )
    demo["wall"].pop("names", None)  # the office's names come from `managers:`
    for screen in demo["wall"]["screens"].values():
        if "title" in screen:
            screen["title"] = office.title
    header = f"# Generated for `salespulse run --demo --demo-locale {locale}`.\n"
    return header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def write_demo_tenants(locale: DemoLocale, directory: Path) -> Path:
    path = directory / f"demo_tenants.{locale}.yaml"
    path.write_text(demo_tenants_text(locale), encoding="utf-8")
    return path
