"""Meta conversions across account setups (issue 16): an account reports its purchases under one or several
overlapping action types; the pipeline reads the first present from an ordered, configurable list (per
account), never a sum, and warns when purchase-like actions arrive that no list maps."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from adpipeline.config import ConfigError, get_config, parse_config
from adpipeline.sandbox.meta.world import PURCHASE_TYPES
from adpipeline.sources.meta.assets import ADS_INSIGHTS
from adpipeline.sources.meta.client import insights_record
from adpipeline.sources.meta.definitions import build_defs
from test_meta_assets import DENVER, JAMAICA, LONDON, meta  # noqa: F401  (the fixture)

DAY = "2026-11-20"
PIXEL, OMNI = "offsite_conversion.fb_pixel_purchase", "omni_purchase"


def _totals(meta) -> dict[str, tuple]:
    """Per account: (conversions, purchase value, 28d_click conversions, the action types read)."""
    rows = meta.rows("SELECT account_id, sum(conversions), sum(purchase_value), sum(conversions_28d_click),"
                     " array_agg(DISTINCT conversion_action_type) FILTER (WHERE conversion_action_type IS NOT NULL)"
                     " FROM raw_meta.ads_insights WHERE date = %s GROUP BY account_id", DAY)
    return {r[0]: (r[1], r[2], r[3], sorted(r[4] or [])) for r in rows}


def _truth(meta, account: str, action_type: str) -> tuple[Decimal, Decimal]:
    """What the emulation reports for one action type, parsed independently of the client."""
    conversions = value = Decimal(0)
    for row in meta.truth(account, DAY, DAY):
        conversions += sum(Decimal(a["value"]) for a in row.get("actions", []) if a["action_type"] == action_type)
        value += sum(Decimal(a["value"]) for a in row.get("action_values", []) if a["action_type"] == action_type)
    return conversions, value


def test_pixel_only_omni_only_and_every_type_load_the_same_purchases_once(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    assert meta.run(ADS_INSIGHTS, days=(DAY, DAY), checks=False).success
    baseline = _totals(meta)
    # Jamaica reports purchase + omni_purchase, London all six types: omni_purchase is read, counted once
    assert baseline[JAMAICA][3] == [OMNI] and baseline[LONDON][3] == [OMNI]
    london_conversions, london_value = _truth(meta, LONDON, OMNI)
    assert london_conversions > 0 and baseline[LONDON][:2] == (london_conversions, london_value)
    assert _truth(meta, LONDON, "purchase") == (london_conversions, london_value)  # overlapping, not additive

    # the same purchases reported by a pixel-only account and an omni_purchase-only account
    meta.script(purchase_types={JAMAICA: [PIXEL], DENVER: [OMNI], LONDON: list(PURCHASE_TYPES)})
    assert {a["action_type"] for r in meta.truth(JAMAICA, DAY, DAY) for a in r.get("actions", [])
            if "purchase" in a["action_type"]} == {PIXEL}
    assert meta.run(ADS_INSIGHTS, days=(DAY, DAY), checks=False).success
    scripted = _totals(meta)
    for account in (JAMAICA, DENVER, LONDON):
        assert scripted[account][:3] == baseline[account][:3], account
        assert scripted[account][0] > 0
    assert scripted[JAMAICA][3] == [PIXEL] and scripted[DENVER][3] == [OMNI]
    assert meta.check("purchases_mapped")["purchases_mapped"].passed


def test_purchases_no_list_maps_are_a_warning_not_silent_zeros(meta):
    meta.sandbox.admin.set_clock("2026-11-23T15:00:00Z")
    config = get_config()
    accounts = [a.model_copy(update={"purchase_action_types": ["purchase"]}) if a.id == DENVER else a
                for a in config.meta.accounts]
    meta.defs = build_defs(config.model_copy(update={"meta": config.meta.model_copy(update={"accounts": accounts})}))
    meta.script(purchase_types={DENVER: [PIXEL], JAMAICA: [PIXEL]})
    result = meta.run(ADS_INSIGHTS, days=(DAY, DAY))
    assert result.success  # a warning, never a block
    totals = _totals(meta)
    assert totals[DENVER][0] == 0 and totals[DENVER][3] == []  # Denver's own list has no pixel type
    assert totals[JAMAICA][0] > 0 and totals[JAMAICA][3] == [PIXEL]  # the default list has
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "purchases_mapped")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert f"{DENVER} reports {PIXEL}" in check.description and JAMAICA not in check.description
    assert "purchase_action_types" in check.description
    assert set(check.metadata["unmapped"].value) == {DENVER}

    # the operator adds the type: the rerun maps it and the warning clears
    accounts = [a.model_copy(update={"purchase_action_types": ["purchase", PIXEL]}) if a.id == DENVER else a
                for a in config.meta.accounts]
    meta.defs = build_defs(config.model_copy(update={"meta": config.meta.model_copy(update={"accounts": accounts})}))
    fixed = meta.run(ADS_INSIGHTS, days=(DAY, DAY))
    assert _totals(meta)[DENVER][0] > 0
    assert next(e for e in fixed.get_asset_check_evaluations() if e.check_name == "purchases_mapped").passed


def _row(*actions: tuple[str, str]) -> dict:
    return {"date_start": DAY, "ad_id": "1", "spend": "1.00",
            "actions": [{"action_type": "link_click", "value": "40"},
                        *({"action_type": t, "value": v, "7d_click": v} for t, v in actions)],
            "action_values": [{"action_type": t, "value": f"{v}0.00"} for t, v in actions]}


def test_the_first_preferred_type_present_wins_and_types_are_never_summed():
    both = insights_record(_row(("purchase", "3"), (OMNI, "4")), "act_1")
    assert (both["conversions"], both["purchase_value"], both["conversion_action_type"]) == (4, 40, OMNI)
    assert insights_record(_row(("purchase", "3"), (OMNI, "4")), "act_1", ("purchase", OMNI))["conversions"] == 3
    pixel = insights_record(_row((PIXEL, "2")), "act_1")
    assert (pixel["conversions"], pixel["conversions_7d_click"], pixel["conversion_action_type"]) == (2, 2, PIXEL)
    unmapped = insights_record(_row(("onsite_conversion.purchase", "5")), "act_1")
    assert (unmapped["conversions"], unmapped["conversion_action_type"]) == (0, None)


def test_purchase_action_types_are_configurable_per_account():
    base = ("meta:\n  accounts:\n    - {id: act_1, name: A, timezone: UTC, currency: USD}\n"
            "    - {id: act_2, name: B, timezone: UTC, currency: USD, purchase_action_types: [%s]}\n")
    config = parse_config(base % PIXEL)
    first, second = config.meta.accounts
    assert config.meta.purchase_types(first)[:2] == (OMNI, "purchase") and PIXEL in config.meta.purchase_types(first)
    assert config.meta.purchase_types(second) == (PIXEL,)
    with pytest.raises(ConfigError, match="purchase_action_types"):
        parse_config(base % "")
    with pytest.raises(ConfigError, match="duplicate"):
        parse_config(base % "purchase, purchase")


def test_a_future_updated_time_never_inverts_the_hierarchy_window(meta):
    """(issue 16, incremental cursors) a stored updated_time in the future must not make every later
    incremental run ask for objects updated after it (0 rows, success)."""
    from test_meta_assets import ADS, HIERARCHY, metadata

    meta.sandbox.admin.set_clock("2026-11-01T12:00:00Z")
    assert meta.run(*HIERARCHY, checks=False).success
    with psycopg.connect(meta.url) as conn:  # one ad whose upstream clock lied
        conn.execute("UPDATE raw_meta.ads SET updated_time = '2027-03-01T00:00:00Z'"
                     " WHERE id = (SELECT min(id) FROM raw_meta.ads WHERE account_id = %s)", (JAMAICA,))
    meta.sandbox.admin.set_clock("2026-11-23T12:00:00Z")
    second = meta.run(*HIERARCHY, checks=False)
    assert second.success
    loaded = {a for (a,) in meta.rows("SELECT DISTINCT scope FROM ops.etl_sync_log WHERE source = 'meta' AND"
                                      " entity = 'ads' AND records_processed > 0 AND started_at > '2026-11-02'")}
    assert JAMAICA in loaded  # its ads updated since 11-01 are loaded, not skipped
    assert metadata(second, ADS)["rows_processed"] > 0
    stored = {(i, t) for i, t in meta.rows("SELECT id, payload->>'updated_time' FROM raw_meta.ads WHERE account_id = %s",
                                           JAMAICA)}
    assert stored == {(e["id"], e["updated_time"]) for e in meta.entities(JAMAICA, "ad")}
