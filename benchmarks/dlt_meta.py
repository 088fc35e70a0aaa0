"""dlt's rest_api source on the Graph insights edge, for benchmarks/meta_insights.py (runs in a venv with
dlt[postgres]; dlt is not a dependency of the project). Reads its job as JSON on stdin: one resource per
ad account over the whole window (time_increment=1, paging.next), merged on (ad_id, date_start)."""

import json
import sys

import dlt
from dlt.sources.rest_api import rest_api_source

FIELDS = ("account_id,account_currency,campaign_id,adset_id,ad_id,date_start,date_stop,spend,impressions,clicks,"
          "reach,actions,action_values")


def main() -> None:
    spec = json.load(sys.stdin)
    # rest_api reads {...} in params as a template: literal braces are doubled
    window = json.dumps({"since": spec["since"], "until": spec["until"]}).replace("{", "{{").replace("}", "}}")
    source = rest_api_source({
        "client": {"base_url": spec["graph_url"].rstrip("/") + "/",
                   "paginator": {"type": "json_link", "next_url_path": "paging.next"}},
        "resource_defaults": {"primary_key": ["ad_id", "date_start"], "write_disposition": "merge",
                              "table_name": "ads_insights"},
        "resources": [{
            "name": f"insights_{account}",
            "endpoint": {"path": f"{account}/insights", "data_selector": "data", "params": {
                "level": "ad", "time_increment": "1", "time_range": window, "fields": FIELDS, "limit": 1000,
                "action_attribution_windows": json.dumps(["1d_click", "7d_click", "28d_click", "1d_view"]),
                "access_token": spec["token"]}},
        } for account in spec["accounts"]],
    })
    pipeline = dlt.pipeline(pipeline_name="bench_meta_dlt", destination=dlt.destinations.postgres(spec["dsn"]),
                            dataset_name=spec["schema"], pipelines_dir=spec.get("pipelines_dir"))
    pipeline.run(source)


if __name__ == "__main__":
    main()
