"""Bad input (issue 22, scenario 10): a malformed adpipeline.yaml, an unknown key, a bad time zone, a region code
with a quote — each one clear error naming the file, the key and the value, when the definitions load (Dagster's
validation, the CLI), never a traceback deep in a run; a missing secret env var — the run's one message names
the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fault_harness import PROJECT, cli, failure_messages, meta_insights_route, sync_story

from adpipeline import definitions
from adpipeline.config import ConfigError, get_config

GOOD = (PROJECT / "adpipeline.yaml").read_text()
BAD = {  # name -> (the edit to the shipped file, what the error must say)
    "malformed YAML": (("  api_version: v24.0", "  api_version: [v24.0"), "not valid YAML"),
    "unknown key": (("reporting_timezone: America/Jamaica", "reporting_timezone: America/Jamaica\nreporting_tz: UTC"),
                    "reporting_tz: unknown key"),
    "bad time zone": (("timezone: America/Denver", "timezone: America/Denvr"),
                      "meta.accounts.1.timezone: unknown time zone 'America/Denvr'"),
    "region code with a quote": (("{code: austin,", "{code: \"aus'tin\","),
                                 "breezeway.regions.1.code: \"aus'tin\" is not allowed"),
}


@pytest.fixture
def bad_config(request, tmp_path, monkeypatch):
    """The shipped adpipeline.yaml with one mistake, as ADPIPELINE_CONFIG; -> (its path, the expected error)."""
    (old, new), expected = BAD[request.param]
    assert old in GOOD
    path = tmp_path / "adpipeline.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    monkeypatch.setenv("ADPIPELINE_CONFIG", str(path))
    get_config.cache_clear()
    yield path, expected
    monkeypatch.undo()
    get_config.cache_clear()  # the next test reads the shipped file again


@pytest.mark.parametrize("bad_config", list(BAD), indirect=True)
def test_a_bad_config_file_is_one_clear_error_at_load_in_the_definitions_and_the_cli(bad_config):
    path, expected = bad_config
    with pytest.raises(ConfigError) as error:
        definitions._merge()  # what loading the code location does
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)

    out = cli("alerts", "test", env=dict(os.environ))  # a command that reads the file first
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"adpipeline: {error.value}"  # one line, no traceback


@pytest.mark.parametrize("bad_config", ["region code with a quote"], indirect=True)
def test_dagster_validation_of_the_code_location_names_the_problem_in_the_config_loader(bad_config):
    path, expected = bad_config
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], capture_output=True,
                         text=True, cwd=PROJECT, env=dict(os.environ), timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1
    assert f"adpipeline.config.ConfigError: {path}: {expected}" in text
    frames = re.findall(r'File "([^"]+)"', text)  # the user's frames only: the loader, nothing of a run
    assert frames and {Path(f).name for f in frames} <= {"definitions.py", "config.py"}, frames


def test_a_missing_secret_env_var_fails_the_run_once_naming_the_variable(pipeline, monkeypatch, warehouse_url):
    monkeypatch.delenv("META_ACCESS_TOKEN")  # and none stored (each scenario starts with an empty token store)
    result = pipeline.scheduled("meta_insights_hourly")
    assert not result.success
    (message,) = failure_messages(result)
    assert "meta: no Meta access token" in message and "set META_ACCESS_TOKEN" in message, message
    assert "Traceback" not in message
    assert meta_insights_route(pipeline.sandbox) == 0  # nothing was asked
    sync_story(warehouse_url, "meta", "ads_insights", result.run_id)  # nothing left running
    (severity, alert), = pipeline.open_alerts().values()  # one alert, the run's, with the recovery step
    assert severity == "critical" and "set META_ACCESS_TOKEN" in alert and "adpipeline tokens exchange meta" in alert
