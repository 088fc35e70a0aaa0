"""The raw_meta landing tables (created by migration 0002_meta.sql; a test keeps the two in step)."""

from __future__ import annotations

from adpipeline.sources.meta.client import ATTRIBUTION_WINDOWS
from adpipeline.warehouse.loader import Table

SCHEMA = "raw_meta"

_STATUS = {"status": "text", "configured_status": "text", "effective_status": "text"}
_TIMES = {"created_time": "timestamptz", "updated_time": "timestamptz"}

# Money and counts are numeric beside their currency; conversions per attribution window of the purchase
# action type chosen for the row (`conversion_action_type`: the first present from the account's preference
# list, 0009_meta_conversion_action_type.sql), `conversions` / `purchase_value` being Meta's default attribution.
_MEASURES = {
    "currency": "text",
    "conversion_action_type": "text",
    "spend": "numeric",
    "impressions": "bigint",
    "clicks": "bigint",
    "reach": "bigint",
    "conversions": "numeric",
    **{f"conversions_{w}": "numeric" for w in ATTRIBUTION_WINDOWS},
    "purchase_value": "numeric",
    **{f"purchase_value_{w}": "numeric" for w in ATTRIBUTION_WINDOWS},
}

AD_ACCOUNTS = Table(SCHEMA, "ad_accounts", {
    "id": "text", "account_id": "text", "name": "text", "currency": "text", "timezone_name": "text",
    "account_status": "integer",
}, key=("id",))

CAMPAIGNS = Table(SCHEMA, "campaigns", {
    "id": "text", "account_id": "text", "name": "text", "objective": "text", **_STATUS, "buying_type": "text",
    "daily_budget_minor": "numeric", **_TIMES, "start_time": "timestamptz", "stop_time": "timestamptz",
}, key=("id",))

ADSETS = Table(SCHEMA, "adsets", {
    "id": "text", "account_id": "text", "campaign_id": "text", "name": "text", **_STATUS,
    "daily_budget_minor": "numeric", "billing_event": "text", "optimization_goal": "text", **_TIMES,
    "start_time": "timestamptz", "end_time": "timestamptz",
}, key=("id",))

ADS = Table(SCHEMA, "ads", {
    "id": "text", "account_id": "text", "campaign_id": "text", "adset_id": "text", "name": "text", **_STATUS,
    "creative_id": "text", **_TIMES,
}, key=("id",))

ADS_INSIGHTS = Table(SCHEMA, "ads_insights", {
    "account_id": "text", "date": "date", "ad_id": "text", "adset_id": "text", "campaign_id": "text", **_MEASURES,
}, key=("account_id", "date", "ad_id"))

ACCOUNT_INSIGHTS = Table(SCHEMA, "account_insights", {
    "account_id": "text", "date": "date", **_MEASURES,
}, key=("account_id", "date"))

HIERARCHY = {"campaigns": CAMPAIGNS, "adsets": ADSETS, "ads": ADS}
ALL = (AD_ACCOUNTS, CAMPAIGNS, ADSETS, ADS, ADS_INSIGHTS, ACCOUNT_INSIGHTS)
