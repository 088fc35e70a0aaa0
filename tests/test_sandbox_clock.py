"""The pipeline's clock follows the sandbox's while data requests are in flight, from forked processes too (the
demo runs a batch's partitions in forked workers, each asking the clock and the APIs at once)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import requests

from adpipeline import clock
from adpipeline.sandbox.breezeway.data import client_id, client_secret
from adpipeline.sandbox.process import SandboxProcess

INVENTORY = "/breezeway/public/inventory/v1"
NASHVILLE = 8558
READS = 20


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_clock_while_hammering(args: tuple[str, str, list[int]]) -> tuple[list[str], list[str], int]:
    """In a forked worker: READS clock readings while threads list tasks; (clock warnings, non-JSON clock
    answers seen directly, data responses)."""
    base_url, token, homes = args
    warnings = _Count()
    logging.getLogger(clock.__name__).addHandler(warnings)
    done = threading.Event()

    def hammer(offset: int) -> int:
        session, served = requests.Session(), 0
        while not done.is_set():
            home = homes[(offset + served) % len(homes)]
            answer = session.get(f"{base_url}{INVENTORY}/task/", params={"home_id": home, "limit": 100},
                                 headers={"Authorization": f"JWT {token}"}, timeout=60)
            assert answer.status_code == 200, answer.text[:200]
            served += 1
        return served

    not_json: list[str] = []
    with ThreadPoolExecutor(3) as pool:
        data = [pool.submit(hammer, i * 7) for i in range(3)]
        try:
            for _ in range(READS):
                clock.now()  # a failed reading only warns here: the parent's reading is the last known time
        finally:
            done.set()
        served = sum(f.result() for f in data)
    direct = requests.get(base_url + "/_admin/clock", timeout=60)
    try:
        direct.json()["now"]
    except ValueError:
        not_json.append(direct.text[:200])
    return warnings.messages, not_json, served


def test_forked_workers_read_the_followed_clock_on_connections_of_their_own_while_data_is_served(
        sandbox: SandboxProcess) -> None:
    token = requests.post(sandbox.base_url + "/breezeway/public/auth/v1/", timeout=30, json={
        "client_id": client_id(NASHVILLE), "client_secret": client_secret(NASHVILLE)}).json()["access_token"]
    homes = [p["id"] for p in requests.get(sandbox.base_url + INVENTORY + "/property", params={"limit": 100},
                                           headers={"Authorization": f"JWT {token}"}, timeout=60).json()["results"]]
    assert os.environ[clock.CLOCK_URL_ENV] == sandbox.admin.clock_url
    clock.now()  # this thread now keeps a connection to the clock open; forked workers inherit it

    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        outcomes = list(pool.map(_read_clock_while_hammering, [(sandbox.base_url, token, homes)] * 3))

    for warnings, not_json, served in outcomes:
        assert warnings == []  # e.g. "the clock at ... did not answer (ReadTimeout); continuing from its last ..."
        assert not_json == []
        assert served > 0
    clock.now()  # and the parent's own connection still answers
