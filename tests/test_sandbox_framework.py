"""The sandbox framework over real HTTP against its subprocess (exercised through the /_selftest emulation)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from adpipeline.sandbox import DEFAULT_CLOCK_START
from adpipeline.sandbox.process import SandboxProcess

ITEMS = "/_selftest/items"
SELFTEST_ONLY = ["adpipeline.sandbox._selftest"]  # extra processes here need no API emulation


def get(sandbox: SandboxProcess, path: str, **params: object) -> requests.Response:
    # a fresh connection per call: a dropped connection must not poison later requests of a test
    return requests.get(sandbox.base_url + path, params=params, timeout=10, headers={"Connection": "close"})


def test_health_and_default_state(sandbox: SandboxProcess) -> None:
    health = sandbox.admin.health()
    assert health["status"] == "ok"
    assert health["seed"] == 42 and health["scale"] == 1.0
    assert "/_selftest" in health["emulations"]
    assert sandbox.admin.now() == DEFAULT_CLOCK_START


def test_scripted_fault_sequence_is_served_in_order_and_counted(sandbox: SandboxProcess) -> None:
    sandbox.admin.add_faults(
        [
            {"method": "GET", "path": ITEMS, "status": 503, "count": 2},
            {"path": ITEMS, "status": 429, "headers": {"Retry-After": "30"}, "body": {"error": "slow down"}},
        ]
    )
    responses = [get(sandbox, ITEMS, limit=5) for _ in range(4)]

    assert [r.status_code for r in responses] == [503, 503, 429, 200]
    assert responses[2].headers["Retry-After"] == "30"
    assert responses[2].json() == {"error": "slow down"}
    assert len(responses[3].json()["results"]) == 5
    assert sandbox.admin.faults() == []  # the script is used up
    counters = sandbox.admin.requests()
    assert counters["total"] == 4
    assert counters["by_route"] == {"GET /_selftest/items": 4}
    assert [e["status"] for e in counters["recent"]] == [503, 503, 429, 200]
    # admin calls are not counted
    sandbox.admin.health()
    assert sandbox.admin.count() == 4


def test_counters_by_route_template_and_by_path(sandbox: SandboxProcess) -> None:
    for thing in ("a", "b", "a"):
        assert get(sandbox, f"/_selftest/things/{thing}").status_code == 200
    assert get(sandbox, "/_selftest/nowhere").status_code == 404
    counters = sandbox.admin.requests()
    assert counters["by_route"]["GET /_selftest/things/{thing_id}"] == 3
    assert counters["by_path"]["GET /_selftest/things/a"] == 2
    assert counters["by_path"]["GET /_selftest/things/b"] == 1
    assert counters["by_route"]["GET (no route)"] == 1
    sandbox.admin.reset_requests()
    assert sandbox.admin.requests()["total"] == 0


def test_fault_matching_by_method_glob_regex_and_query(sandbox: SandboxProcess) -> None:
    sandbox.admin.add_faults(
        [
            {"method": "POST", "path": "/_selftest/*", "status": 500},  # wrong method: never fires on GET
            {"path_regex": r"/_selftest/things/\d+", "status": 404, "count": None},
            {"path": ITEMS, "query": {"page": "2"}, "status": 502},
        ]
    )
    assert get(sandbox, "/_selftest/things/12").status_code == 404
    assert get(sandbox, "/_selftest/things/x12").status_code == 200
    assert get(sandbox, ITEMS, page=1).status_code == 200
    assert get(sandbox, ITEMS, page=2).status_code == 502
    assert get(sandbox, "/_selftest/things/7").status_code == 404  # unlimited count
    assert len(sandbox.admin.faults()) == 2


def test_probability_faults_are_deterministic_for_a_seed(sandbox: SandboxProcess) -> None:
    fault = {"path": ITEMS, "status": 500, "probability": 0.5}

    def run() -> list[int]:
        sandbox.admin.clear_faults()
        sandbox.admin.add_faults([fault])
        return [get(sandbox, ITEMS, limit=1).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 500 in first and 200 in first


def test_truncated_body_abort_is_seen_as_a_broken_response(sandbox: SandboxProcess) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "truncate": True}])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(sandbox, ITEMS, limit=5)
    assert get(sandbox, ITEMS, limit=5).json()["results"]  # next request is normal


def test_truncated_body_short_is_complete_http_but_broken_json(sandbox: SandboxProcess) -> None:
    whole = get(sandbox, ITEMS, limit=5).content
    sandbox.admin.add_faults([{"path": ITEMS, "truncate": "short"}])
    response = get(sandbox, ITEMS, limit=5)
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]
    with pytest.raises(ValueError):
        response.json()


def test_dropped_connection(sandbox: SandboxProcess) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "drop": True}])
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        get(sandbox, ITEMS)
    assert get(sandbox, ITEMS).status_code == 200
    recent = sandbox.admin.requests()["recent"]
    assert [e["status"] for e in recent] == ["dropped", 200]
    assert sandbox.running


def test_dropped_connection_on_a_kept_alive_session(sandbox: SandboxProcess) -> None:
    session = requests.Session()
    assert session.get(sandbox.base_url + ITEMS, timeout=10).status_code == 200
    sandbox.admin.add_faults([{"path": ITEMS, "drop": True}])
    with pytest.raises(requests.ConnectionError):
        session.get(sandbox.base_url + ITEMS, timeout=10)
    assert session.get(sandbox.base_url + ITEMS, timeout=10).status_code == 200


def test_delay(sandbox: SandboxProcess) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "delay": 0.6}])
    started = time.monotonic()
    assert get(sandbox, ITEMS, limit=1).status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    get(sandbox, ITEMS, limit=1)
    assert time.monotonic() - started < 0.5


def test_a_held_request_waits_until_the_faults_are_cleared(sandbox: SandboxProcess) -> None:
    (held,) = sandbox.admin.add_faults([{"path": ITEMS, "hold": True}])
    answer: dict = {}
    waiting = threading.Thread(target=lambda: answer.setdefault("response", get(sandbox, ITEMS)))
    waiting.start()
    while held in {f["id"] for f in sandbox.admin.faults()}:
        time.sleep(0.01)  # until the request reached the sandbox and took the fault
    assert get(sandbox, ITEMS).status_code == 200  # other requests are served meanwhile
    assert waiting.is_alive() and "response" not in answer  # the held one is not
    sandbox.admin.clear_faults()
    waiting.join()
    assert answer["response"].status_code == 200 and answer["response"].json()["results"]


def test_extra_headers_on_real_and_faulted_responses(sandbox: SandboxProcess) -> None:
    usage = '{"call_count":91,"total_cputime":10,"total_time":12}'
    sandbox.admin.add_faults(
        [
            {"path": ITEMS, "headers": {"X-App-Usage": usage}, "count": 2},
            {"path": ITEMS, "status": 403, "body": "<html>denied</html>", "content_type": "text/html"},
        ]
    )
    first, second, third = (get(sandbox, ITEMS, limit=2) for _ in range(3))
    assert first.headers["X-App-Usage"] == usage and second.headers["X-App-Usage"] == usage
    assert len(first.json()["results"]) == 2  # the real body, untouched
    assert third.status_code == 403
    assert third.headers["Content-Type"] == "text/html"
    assert third.text == "<html>denied</html>"
    assert "X-App-Usage" not in get(sandbox, ITEMS).headers


def test_fault_admin_api(sandbox: SandboxProcess) -> None:
    ids = sandbox.admin.add_faults([{"path": "/a", "status": 500}, {"path": "/b", "status": 500}])
    listed = sandbox.admin.faults()
    assert [f["id"] for f in listed] == ids
    response = requests.delete(f"{sandbox.base_url}/_admin/faults/{ids[0]}", timeout=10)
    assert [f["id"] for f in response.json()["faults"]] == ids[1:]
    sandbox.admin.clear_faults()
    assert sandbox.admin.faults() == []
    bad = requests.post(f"{sandbox.base_url}/_admin/faults", json=[{"path": "/a", "stauts": 500}], timeout=10)
    assert bad.status_code == 400 and "stauts" in bad.json()["error"]


def test_clock_set_and_advance(sandbox: SandboxProcess) -> None:
    assert get(sandbox, "/_selftest/now").json()["now"] == "2026-11-23T12:00:00Z"
    sandbox.admin.set_clock("2027-01-01T00:00:00Z")
    assert get(sandbox, "/_selftest/now").json()["now"] == "2027-01-01T00:00:00Z"
    now = sandbox.admin.advance(86400 * 60 + 30)
    assert now == datetime(2027, 3, 2, 0, 0, 30, tzinfo=timezone.utc)
    assert get(sandbox, "/_selftest/now").json()["now"] == "2027-03-02T00:00:30Z"
    # frozen: does not move by itself
    time.sleep(0.05)
    assert sandbox.admin.now() == now


def test_running_clock_moves_with_real_time(sandbox: SandboxProcess) -> None:
    start = sandbox.admin.set_clock(DEFAULT_CLOCK_START, running=True)
    time.sleep(0.2)
    assert sandbox.admin.now() - start >= timedelta(seconds=0.2)


def test_reset_restores_clock_counters_and_faults(sandbox: SandboxProcess) -> None:
    sandbox.admin.advance(3600)
    sandbox.admin.add_faults([{"path": ITEMS, "status": 500}])
    get(sandbox, ITEMS)
    sandbox.admin.reset()
    assert sandbox.admin.now() == DEFAULT_CLOCK_START
    assert sandbox.admin.faults() == [] and sandbox.admin.count() == 0


def test_seed_determines_data_and_scale_row_counts(sandbox: SandboxProcess) -> None:
    same = get(sandbox, ITEMS, limit=50).json()
    assert get(sandbox, ITEMS, limit=50).json() == same
    with (
        SandboxProcess(seed=42, emulations=SELFTEST_ONLY) as again,
        SandboxProcess(seed=7, scale=2.0, emulations=SELFTEST_ONLY) as other,
    ):
        assert get(again, ITEMS, limit=50).json() == same
        different = get(other, ITEMS, limit=50).json()
        assert [r["value"] for r in different["results"]] != [r["value"] for r in same["results"]]
        assert same["total_results"] == 250 and different["total_results"] == 500
        assert get(other, "/_selftest/cursor").json()["data"] != get(again, "/_selftest/cursor").json()["data"]
    with SandboxProcess(scale=0.1, emulations=SELFTEST_ONLY) as small:
        body = get(small, ITEMS, limit=100).json()
        assert body["total_results"] == 25 and len(body["results"]) == 25 and body["total_pages"] == 1


def test_faults_file_and_clock_given_at_start(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text(
        "faults:\n"
        "  - path: /_selftest/items\n"
        "    status: 503\n"
        "    count: 2\n"
        "  - path: /_selftest/*\n"
        "    status: 418\n"
        "    body: teapot\n"
    )
    with SandboxProcess(faults_file=faults, clock="2026-01-01T00:00:00Z", emulations=SELFTEST_ONLY) as sb:
        assert [get(sb, ITEMS).status_code for _ in range(4)] == [503, 503, 418, 200]
        assert sb.admin.now() == datetime(2026, 1, 1, tzinfo=timezone.utc)
        sb.admin.reset()  # back to the start state: the file's script again
        assert get(sb, ITEMS).status_code == 503


def test_bad_faults_file_fails_startup_with_a_message(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text('[{"path": "/x", "status": 2000}]')
    with pytest.raises(RuntimeError, match="status must be an HTTP status code"):
        SandboxProcess(faults_file=faults, emulations=SELFTEST_ONLY, startup_timeout=20).start()


def test_stop_terminates_the_process() -> None:
    process = SandboxProcess(emulations=SELFTEST_ONLY).start()
    url = process.base_url
    process.stop()
    assert not process.running
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_admin/health", timeout=2)


def test_only_the_api_emulations_may_be_missing() -> None:
    from adpipeline.sandbox.app import load_emulations

    assert [m.PREFIX for m in load_emulations(SELFTEST_ONLY)] == ["/_selftest"]
    with pytest.raises(ModuleNotFoundError):
        load_emulations(["adpipeline.sandbox.does_not_exist"])
    with pytest.raises(ValueError, match="not a sandbox emulation"):
        load_emulations(["adpipeline.sandbox.state"])
