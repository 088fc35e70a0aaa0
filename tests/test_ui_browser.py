"""The Dagster UI as an operator sees it, in a real browser: `adpipeline dev` on the session's warehouse, Debian's
chromium driven by Selenium through chromedriver. Screenshots go to test-artifacts/ (or $ADPIPELINE_TEST_ARTIFACTS).

Without chromium/chromedriver the test skips on a developer machine, but FAILS where ADPIPELINE_REQUIRE_BROWSER is
set (.ci/run sets it after installing them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests.test_cli_dev import code_location_status, free_port

PROJECT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ADPIPELINE_TEST_ARTIFACTS", PROJECT / "test-artifacts"))


def _browser_binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver"
        if os.environ.get("ADPIPELINE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


def wait_for_text(browser, texts: list[str], timeout: float = 90) -> str:
    """The page's text once every one of `texts` is in it (the UI renders as its queries return: poll)."""
    deadline = time.monotonic() + timeout
    while True:
        body = browser.find_element("tag name", "body").text
        missing = [t for t in texts if t not in body]
        if not missing:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown on {browser.current_url}: {missing}\n---\n{body[:3000]}")
        time.sleep(0.5)


@pytest.fixture
def dev_ui(warehouse_url, server_home):
    """`adpipeline dev` on a free port, on the session's warehouse and a Dagster database of its own."""
    name = f"dagster_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    port = free_port()
    # `adpipeline dev` (UI, daemon, its own sandbox on real time) on the host's real clock: under libfaketime (the
    # suite's `faketime -f +100d` run) the daemon's timed waits never return and it never dequeues a run, as in
    # test_deploy_grpc. Nothing here depends on the date.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADPIPELINE_", "DAGSTER_", "META_", "GA4_",
                                                                     "BREEZEWAY_", "FAKETIME")) and k != "LD_PRELOAD"}
    env.update({"ADPIPELINE_HOME": str(server_home / "home"), "ADPIPELINE_WAREHOUSE_URL": warehouse_url,
                "ADPIPELINE_DAGSTER_PG_URL": "postgresql+psycopg2://"
                + warehouse_url.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}",
                # the warehouse is given by URL (not started by dev): tokens need a key from the environment
                "ADPIPELINE_TOKEN_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()})
    log_path = server_home / "dev.log"  # a file, not a pipe: nobody drains a pipe while the test browses
    log_file = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "adpipeline.cli", "dev", "--port", str(port)], env=env, cwd=PROJECT,
                            stdout=log_file, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, log_path.read_text()
        assert code_location_status(port) == ("LOADED", "RepositoryLocation")
        sandbox_url = re.search(r"sandbox APIs at (\S+);", log_path.read_text()).group(1)
        yield DevUI(f"http://127.0.0.1:{port}", sandbox_url, env)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log_file.close()
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class DevUI:
    """The running `adpipeline dev`: its UI, and the sandbox it started (to inject faults)."""

    def __init__(self, url: str, sandbox_url: str, env: dict[str, str]) -> None:
        self.url, self.sandbox_url, self.env = url, sandbox_url, env

    def demo_run(self, asset: str) -> str:
        """One run of the demo's (`adpipeline.demo.DemoJob`: in another process, as `adpipeline demo` runs them)
        into this UI's instance: `asset` and its blocking checks, its latest partition. Its run id."""
        script = (
            "import sys, dagster as dg\n"
            "from adpipeline.demo import DemoJob, deferred_check_keys, demo_partition_keys\n"
            "from adpipeline.stack import local_stack\n"
            "with local_stack(sandbox=True):\n"
            "    from adpipeline.definitions import defs\n"
            "    key = dg.AssetKey.from_user_string(sys.argv[1])\n"
            "    node = defs.resolve_asset_graph().get(key)\n"
            "    checks = [c for c in node.check_keys if c not in deferred_check_keys(defs)]\n"
            "    with dg.DagsterInstance.get() as instance:\n"
            "        result = DemoJob.of(defs).execute(instance, [key], checks,"
            " demo_partition_keys(node.partitions_def)[-1])\n"
            "    assert result.success\n"
            "    print('RUN', result.run_id)\n")
        done = subprocess.run([sys.executable, "-c", script, asset], env=self.env, cwd=PROJECT, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return re.search(r"^RUN (\S+)$", done.stdout, re.M).group(1)

    def wait_for_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = self.graphql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                                  id=run_id)["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout} s"
            time.sleep(1)

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        return response.json()["data"]

    def run_job(self, job: str, timeout: float = 120) -> tuple[str, list[str]]:
        """Launch a job of the code location as the UI's Launchpad does (queued, started by the daemon), and
        wait for it to finish: its final status and its event log's messages."""
        launched = self.graphql(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename"
            " ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
            p={"selector": {"repositoryLocationName": "adpipeline", "repositoryName": "__repository__",
                            "jobName": job}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        return self.wait_for_run(run_id, timeout), self.run_messages(run_id)

    def run_messages(self, run_id: str) -> list[str]:
        events = self.graphql("query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {"
                              " ... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message cause { message } } } } } } }",
                              id=run_id)["logsForRun"]["events"]
        return [e["message"] + json.dumps(e.get("error") or "") for e in events if e.get("message")]


@pytest.fixture
def browser():
    chromium, driver = _browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,6000"):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def test_an_operator_sees_the_code_location_assets_checks_and_automation(dev_ui, browser):
    from adpipeline.definitions import defs
    from adpipeline.sandbox.meta import DEMO_ACCESS_TOKEN

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui = dev_ui.url

    def shot(name: str) -> None:
        for skip in browser.find_elements("xpath", "//button[normalize-space()='Skip']"):
            skip.click()  # the "Join the Dagster community" pop-up of a fresh browser profile
        browser.save_screenshot(str(ARTIFACTS / f"ui-{name}.png"))

    # a small load first: the Meta token job (one asset, its five checks), through the daemon's run queue
    status, messages = dev_ui.run_job("meta_token_job")
    assert status == "SUCCESS", "\n".join(messages)

    browser.get(f"{ui}/locations")
    body = wait_for_text(browser, ["adpipeline", "Loaded"])
    shot("1-code-location")
    assert "Error" not in body.split("adpipeline", 1)[1][:200]  # no load error beside the location

    browser.get(f"{ui}/assets?view=flat")
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    wait_for_text(browser, [keys[0].split("/")[-1], keys[-1].split("/")[-1]])
    body = wait_for_text(browser, [k.split("/")[-1] for k in keys])
    shot("2-catalog")
    assert len(keys) > 40 and body
    browser.set_window_size(1600, 1200)  # tall only for the catalog: its list renders the rows in view

    browser.get(f"{ui}/assets/meta/ads_insights?view=checks")
    wait_for_text(browser, ["lateness", "all_scopes_loaded", "spend_reconciles", "completeness"])
    shot("3-meta-ads-insights-checks")
    browser.get(f"{ui}/assets/meta/ads_insights")
    wait_for_text(browser, ["Freshness", "meta"])
    shot("4-meta-ads-insights-overview")

    browser.get(f"{ui}/automation")
    names = [s.name for s in defs.schedules or []] + [s.name for s in defs.sensors or []]
    wait_for_text(browser, names)
    # every schedule and sensor shown running: its toggle (a checkbox beside the row's select box) is on; the
    # states load after the names, so poll
    deadline, on = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        on = browser.execute_script("return document.querySelectorAll('input[type=checkbox]:checked').length")
        if on >= len(names):
            break
        time.sleep(0.5)
    shot("5-automation")
    assert on == len(names), f"{on} toggles on for {len(names)} schedules and sensors"

    # a fault: the token loses its ads permissions at Meta; the next token run's scopes check fails (ERROR)
    browser.get(f"{ui}/assets/meta/access_token?view=checks")
    wait_for_text(browser, ["token_scopes\nSucceeded"])
    shot("6-meta-token-checks-passing")
    requests.post(f"{dev_ui.sandbox_url}/_admin/meta/tokens", json={
        "access_token": DEMO_ACCESS_TOKEN, "scopes": ["business_management"]}, timeout=10).raise_for_status()
    dev_ui.run_job("meta_token_job")
    browser.get(f"{ui}/assets/meta/access_token?view=checks")
    body = wait_for_text(browser, ["token_scopes\nFailed"])
    browser.find_element("xpath", "//*[normalize-space()='token_scopes']").click()
    body = wait_for_text(browser, ["missing permissions ads_read or ads_management"])
    shot("7-meta-token-scopes-failing")
    detail = body[body.index("Latest execution"):]
    assert detail.index("Failed") < detail.index("Timestamp"), detail  # the evaluation result of token_scopes
    assert "runbook" in detail and "docs/runbooks/token_scopes.md" in browser.page_source  # its runbook link


RUN_QUERY = ("query($id: ID!) { runOrError(runId: $id) { ... on Run { status pipelineName assetSelection { path }"
             " repositoryOrigin { repositoryLocationName repositoryName } tags { key value } } } }")


def test_a_demo_run_shows_its_job_and_re_executes_from_the_ui(dev_ui, browser):
    """A run of `adpipeline demo` is a run of the code location's asset job (what "Materialize" runs): its page
    finds the job, Re-execute is enabled, and the re-execution (the UI's "All steps", queued and run by the
    daemon in the code location) succeeds for the same partition."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_id = dev_ui.demo_run("ga4/traffic_acquisition")
    run = dev_ui.graphql(RUN_QUERY, id=run_id)["runOrError"]
    assert run["pipelineName"] == "__ASSET_JOB" and run["assetSelection"] == [{"path": ["ga4", "traffic_acquisition"]}]
    assert run["repositoryOrigin"] == {"repositoryLocationName": "adpipeline", "repositoryName": "__repository__"}
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["adpipeline/demo"] == "true" and tags["dagster/partition"]

    browser.set_window_size(1600, 1200)
    browser.get(f"{dev_ui.url}/runs/{run_id}")
    body = wait_for_text(browser, ["Success", "traffic_acquisition", "Re-execute"])
    assert "not found" not in body.lower(), body[:3000]
    for skip in browser.find_elements("xpath", "//button[normalize-space()='Skip']"):
        skip.click()  # the "Join the Dagster community" pop-up of a fresh browser profile
    buttons = [b for b in browser.find_elements("xpath", "//button[contains(normalize-space(), 'Re-execute')]")
               if b.is_displayed()]
    browser.save_screenshot(str(ARTIFACTS / "ui-8-demo-run-re-execute-enabled.png"))
    assert buttons and all(b.is_enabled() and b.get_attribute("disabled") is None for b in buttons), body[:3000]

    # what the button sends for "All steps": re-execution from the parent run, resolved in the code location
    launched = dev_ui.graphql(
        "mutation($p: ReexecutionParams!) { launchPipelineReexecution(reexecutionParams: $p) { __typename"
        " ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
        p={"parentRunId": run_id, "strategy": "ALL_STEPS"})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    child = launched["run"]["runId"]
    status = dev_ui.wait_for_run(child)
    assert status == "SUCCESS", "\n".join(dev_ui.run_messages(child))
    again = dev_ui.graphql(RUN_QUERY, id=child)["runOrError"]
    assert again["pipelineName"] == "__ASSET_JOB" and again["assetSelection"] == run["assetSelection"]
    assert {t["key"]: t["value"] for t in again["tags"]}["dagster/partition"] == tags["dagster/partition"]
    browser.get(f"{dev_ui.url}/runs/{child}")
    wait_for_text(browser, ["Success", "traffic_acquisition", run_id[:8]])
    browser.save_screenshot(str(ARTIFACTS / "ui-9-demo-run-re-executed.png"))
