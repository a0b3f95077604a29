"""`salespulse dataset`: dates read as the data states them, nothing dropped silently."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import mean

from salespulse.dev.datasets import BLANK_ORIGIN, MAVEN_UNDATED, Conversion, maven_crm, olist_funnel

MAVEN = Path(__file__).resolve().parents[1] / "data" / "maven_crm"


def write_maven(directory: Path) -> None:
    directory.mkdir()
    (directory / "sales_teams.csv").write_text(
        "sales_agent,manager,regional_office\r\nAnna Agent,Max Manager,West\r\n"
    )
    (directory / "sales_pipeline.csv").write_text(
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\r\n"
        "A1,Anna Agent,GTX Basic,Acme,Won,2017-01-01,2017-02-20,500\r\n"
        "A2,Anna Agent,GTX Basic,,Prospecting,,,\r\n"
        "A3,Anna Agent,GTX Basic,,Prospecting,,,\r\n"
    )


def test_a_maven_sales_cycle_is_the_whole_days_between_its_dates(tmp_path: Path) -> None:
    write_maven(tmp_path / "maven")
    conversion = Conversion()
    events = list(maven_crm(tmp_path / "maven", "maven", conversion))
    by_type = {e["event_id"]: datetime.fromisoformat(e["occurred_at"]) for e in events}
    # 09:00 engage / 16:00 close made every cycle 7 hours longer than the data says.
    assert by_type["opp-A1-won"] - by_type["opp-A1-created"] == timedelta(days=50)
    assert by_type["opp-A1-created"].hour == 12
    assert conversion.skipped == {MAVEN_UNDATED: 2}
    assert conversion.render() == [f"skipped 2 {MAVEN_UNDATED}"]


def test_the_carried_slice_gives_the_datas_own_mean_cycle() -> None:
    """Computed from the CSV's dates alone, then from the converted events: equal."""
    import csv

    with (MAVEN / "sales_pipeline.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["deal_stage"] == "Won"]
    expected = mean(
        (date.fromisoformat(r["close_date"]) - date.fromisoformat(r["engage_date"])).days
        for r in rows
    )
    events = list(maven_crm(MAVEN))
    created = {e["entity_id"]: e["occurred_at"] for e in events if e["type"] == "deal_created"}
    cycles = [
        (
            datetime.fromisoformat(e["occurred_at"])
            - datetime.fromisoformat(created[e["entity_id"]])
        ).total_seconds()
        / 86_400
        for e in events
        if e.get("stage_kind") == "won"
    ]
    assert len(cycles) == len(rows)
    assert mean(cycles) == expected


def test_olist_blank_origins_keep_their_own_value(tmp_path: Path) -> None:
    olist = tmp_path / "olist"
    olist.mkdir()
    (olist / "olist_marketing_qualified_leads_dataset.csv").write_text(
        "mql_id,first_contact_date,landing_page_id,origin\n"
        "m1,2018-02-01,p1,unknown\n"
        "m2,2018-02-02,p1,\n"
        "m3,,p1,social\n"
    )
    (olist / "olist_closed_deals_dataset.csv").write_text(
        "mql_id,seller_id,sdr_id,sr_id,won_date,business_segment,lead_type,"
        "lead_behaviour_profile,has_company,has_gtin,average_stock,business_type,"
        "declared_product_catalog_size,declared_monthly_revenue\n"
        "m2,s2,d2,r2,2018-03-01 10:00:00,pets,online,cat,,,,reseller,,0\n"
    )
    conversion = Conversion()
    events = list(olist_funnel(olist, "olist", conversion))
    channels = {e["event_id"]: e["source_channel"] for e in events}
    assert channels == {
        "mql-m1": "unknown",
        "mql-m2": BLANK_ORIGIN,
        "deal-m2-created": BLANK_ORIGIN,
        "deal-m2-won": BLANK_ORIGIN,
    }
    assert conversion.skipped == {"MQLs without a first contact date": 1}


def test_the_command_says_how_many_it_skipped_and_why(tmp_path: Path) -> None:
    out = tmp_path / "maven.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "salespulse.cli",
            "dataset",
            "maven-crm",
            str(MAVEN),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"skipped 167 {MAVEN_UNDATED}" in done.stderr
