import pytest

from adpipeline.config import ConfigError, load_config, parse_config


def test_default_config_describes_the_sandbox_data_set():
    config = load_config()
    assert config.reporting_timezone == "America/Jamaica"
    assert [a.id for a in config.meta.accounts][:1] == ["act_100000000000001"]
    assert len(config.breezeway.regions) == 8
    assert {r.code for r in config.breezeway.regions} >= {"nashville", "hill_country"}
    assert config.breezeway.regions[0].client_secret_var == "BREEZEWAY_NASHVILLE_CLIENT_SECRET"
    assert config.ga4.properties and config.ga4.restatement_days == 3
    assert config.meta.attribution_window_days == 28


@pytest.mark.parametrize(
    "text, expected",
    [
        ("bogus: 1", "bogus: unknown key"),
        ("meta: {accounts: [{id: '123', name: x, timezone: UTC, currency: USD}]}", "meta.accounts.0.id"),
        ("meta: {accounts: [{id: act_1, name: x, timezone: Mars/Base, currency: USD}]}",
         "meta.accounts.0.timezone: unknown time zone 'Mars/Base'"),
        ("ga4: {properties: [{id: '1', name: x, timezone: UTC, currency: usd}]}", "ga4.properties.0.currency"),
        ("meta: {access_token_env: 'EAAB-a-real-token'}", "is not an environment variable NAME"),
        ("cadences: {ga4: 'every four hours'}", "cadences.ga4: invalid cron expression"),
        ("breezeway: {regions: [{code: a, company_id: 1, timezone: UTC}, {code: a, company_id: 2, timezone: UTC}]}",
         "duplicate code 'a'"),
        ("- just a list", "top level must be a mapping"),
        ("meta: [unclosed", "not valid YAML"),
    ],
)
def test_bad_config_names_the_bad_key(text, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "adpipeline.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("adpipeline.yaml")


def test_missing_file_says_how_to_point_at_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ADPIPELINE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="ADPIPELINE_CONFIG"):
        load_config()


def test_history_starts_come_from_the_config_and_build_the_partitions():
    from adpipeline.sources.ga4.assets import DATE, ga4_partitions
    from adpipeline.sources.meta.partitions import daily_partitions

    default = load_config()
    assert daily_partitions(default).start.date().isoformat() == "2025-01-01"
    assert ga4_partitions(default).get_partitions_def_for_dimension(DATE).start.date().isoformat() == "2026-01-01"
    older = parse_config("meta: {history_start: 2023-11-01}\nga4: {history_start: 2024-06-01, properties: "
                         "[{id: '1', name: x, timezone: UTC, currency: USD}]}")
    assert daily_partitions(older).start.date().isoformat() == "2023-11-01"
    assert ga4_partitions(older).get_partitions_def_for_dimension(DATE).start.date().isoformat() == "2024-06-01"


def test_the_default_file_declares_exactly_the_built_in_ga4_reports():
    # dbt staging and migration 0004 are written for these: the default file must not drift from them
    from typing import get_args

    from adpipeline.config import Ga4MetricType
    from adpipeline.sources.ga4.reports import PG_TYPES, REPORTS, configured_reports

    assert configured_reports(load_config()) == REPORTS
    assert configured_reports(parse_config("ga4: {}")) == REPORTS  # no `reports`: the built-in ones
    assert set(get_args(Ga4MetricType)) == set(PG_TYPES)


@pytest.mark.parametrize(
    "reports, expected",
    [
        ("[{name: x, description: d, dimensions: [], metrics: [{name: sessions, type: TYPE_LITRES}]}]",
         "ga4.reports.0.metrics.0.type"),
        ("[{name: x, description: d, dimensions: [], metrics: []}]", "ga4.reports.0.metrics"),
        ("[{name: X-1, description: d, dimensions: [], metrics: [{name: sessions, type: TYPE_INTEGER}]}]",
         "ga4.reports.0.name"),
    ],
)
def test_a_bad_report_declaration_names_the_bad_key(reports, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(f"ga4: {{reports: {reports}}}", "adpipeline.yaml")
    assert expected in str(err.value)
