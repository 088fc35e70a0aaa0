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
