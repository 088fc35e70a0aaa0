"""The campaign mapping seed against the sandbox: the demo's GA4 Paid Social traffic and Meta campaigns match.

seeds/campaign_mapping.csv is what users edit; the rows shipped describe the sandbox, whose GA4 properties
tag their Paid Social sessions with utm_campaign values naming the Meta sandbox's campaigns (one on purpose
unmapped, so the demo shows unmatched sessions as well as matches).
"""

from __future__ import annotations

import csv
from datetime import date

from adpipeline.sandbox.ga4.data import PROPERTIES, generate_day
from adpipeline.sandbox.meta.world import ACCOUNTS, world
from adpipeline.transform.project import DBT_PROJECT_DIR

SANDBOX_SEED = 42  # the sandbox's default seed (adpipeline sandbox --seed), the demo's data
SEED = DBT_PROJECT_DIR / "seeds" / "campaign_mapping.csv"


def _mapping() -> list[dict[str, str]]:
    with SEED.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_mapping_row_names_sandbox_traffic_and_a_campaign_of_an_account_in_the_same_zone():
    campaigns = {c.id: (a, c) for a in ACCOUNTS for c in world(SANDBOX_SEED, 1.0).entities(a, "campaign")}
    rows = _mapping()
    assert len(rows) >= 4
    for row in rows:
        prop = PROPERTIES[row["ga4_property_id"]]
        assert row["utm_campaign"] in prop.paid_social_campaigns, row
        account, campaign = campaigns[row["meta_campaign_id"]]
        assert account.timezone_name == prop.time_zone, row  # both sides count the same calendar days
        assert campaign.name.split(" - ")[-1].lower().replace(" ", "_") in row["utm_campaign"], (row, campaign.name)


def test_the_sandbox_emits_mapped_and_unmapped_paid_social_campaigns_deterministically():
    mapped = {(r["ga4_property_id"], r["utm_campaign"]) for r in _mapping()}
    for prop in (PROPERTIES["310000001"], PROPERTIES["310000002"]):
        hits = generate_day(SANDBOX_SEED, 1.0, prop, date(2026, 11, 20))
        assert hits == generate_day(SANDBOX_SEED, 1.0, prop, date(2026, 11, 20))  # same seed, same day: same data
        social = {h.campaign for h in hits if h.channel == "Paid Social"}
        assert {c for c in social if (prop.id, c) in mapped}, prop.id  # the demo shows matches...
        assert {c for c in social if (prop.id, c) not in mapped}, prop.id  # ...and unmatched sessions
