"""docs/redis-layout.md is the generator's rendering of the key table in
salespulse/core/kpi/redis_layout.py, and that table names every key family the store has."""

from __future__ import annotations

from pathlib import Path

from salespulse.core.kpi import redis_layout
from salespulse.core.kpi.redis_layout import STORE_FAMILIES, KpiKeys
from salespulse.dev.redis_layout_doc import COMMAND, main, rendered

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "redis-layout.md"


def test_the_committed_doc_is_exactly_the_generators_output() -> None:
    assert DOC.read_text(encoding="utf-8") == rendered(), (
        f"docs/redis-layout.md differs from salespulse/core/kpi/redis_layout.py's docstring: "
        f"run `{COMMAND}` and commit the result"
    )


def test_the_generator_writes_the_file_it_is_given(tmp_path: Path) -> None:
    target = tmp_path / "layout.md"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == rendered()


def test_the_table_names_every_key_the_code_builds() -> None:
    keys = KpiKeys("{p}")
    built = [
        keys.tenants,
        keys.bucket("{tenant}", "{gran}", "{bucket}"),
        keys.entity("{tenant}", "{kind}", "{id}"),
        keys.open_stage("{tenant}", "{pipeline}", "{stage}").replace(redis_layout.SEP, "␟"),
        keys.open_keys("{tenant}"),
        keys.won("{tenant}"),
        keys.seen("{tenant}", "{day}"),
        keys.mark("{tenant}", "{day}"),
        keys.sla_mark("{tenant}", "{day}"),
        keys.late("{tenant}", "{day}"),
        keys.offsets("{group}"),
        keys.waiting("{tenant}"),
        keys.day_snapshot("{tenant}", "{day}"),
        keys.last_received,
        keys.store_reset,
        keys.store_epoch,
        keys.staging().prefix + "…",
        "{p}crmstate:{tenant}:{crm}:{entity}:{id}",  # handlers/enrichment/crm_state.py
    ]
    table = redis_layout.__doc__ or ""
    assert [key for key in built if f"- `{key}`" not in table] == []
    assert [family for family in STORE_FAMILIES if f"- `{{p}}{family}" not in table] == []
