-- Which purchase action type a Meta insights row's conversions were read from: the first present from the
-- account's ordered preference list (adpipeline.yaml meta.purchase_action_types). NULL: none of them was
-- present (zero conversions, or purchase-like actions the list does not map: the purchases_mapped check).
ALTER TABLE raw_meta.ads_insights ADD COLUMN IF NOT EXISTS conversion_action_type text;
ALTER TABLE raw_meta.account_insights ADD COLUMN IF NOT EXISTS conversion_action_type text;
