"""The sandbox as a child process: `SandboxProcess` starts it and `SandboxAdmin` drives its /_admin API.

    with SandboxProcess(clock="2026-11-23T12:00:00Z") as sandbox:
        sandbox.admin.add_faults([{"path": "/meta/*", "status": 503, "count": 2}])
        requests.get(sandbox.base_url + "/meta/...")
        assert sandbox.admin.count("GET /meta/{version}/act_{id}/insights") == 3

Used by the stack (demo, dev), the benchmarks and the tests' fixtures (tests/conftest.py).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from adpipeline.sandbox.server import READY_PREFIX
from adpipeline.sandbox.state import format_datetime, parse_datetime

_READY = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SandboxAdmin:
    """Thin client for the sandbox's /_admin API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._session = requests.Session()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(method, f"{self.base_url}/_admin{path}", json=body, timeout=10)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    @property
    def clock_url(self) -> str:
        """Where the sandbox tells its time (what ADPIPELINE_CLOCK_URL points at)."""
        return f"{self.base_url}/_admin/clock"

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def now(self) -> datetime:
        return parse_datetime(self._call("GET", "/clock")["now"])

    def set_clock(self, when: datetime | str, running: bool | None = None) -> datetime:
        body: dict[str, Any] = {"now": format_datetime(parse_datetime(when))}
        if running is not None:
            body["running"] = running
        return parse_datetime(self._call("POST", "/clock", body)["now"])

    def advance(self, seconds: float) -> datetime:
        return parse_datetime(self._call("POST", "/clock", {"advance_seconds": seconds})["now"])

    def add_faults(self, faults: list[dict[str, Any]] | dict[str, Any]) -> list[int]:
        return self._call("POST", "/faults", faults)["added"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def requests(self) -> dict[str, Any]:
        """{"total": n, "by_route": {"GET /x/{id}": n}, "by_path": {"GET /x/1": n}, "recent": [...]}"""
        return self._call("GET", "/requests")

    def count(self, key: str | None = None) -> int:
        """Requests counted for "METHOD /route/{template}" or "METHOD /concrete/path"; total if None."""
        counters = self.requests()
        if key is None:
            return counters["total"]
        return counters["by_route"].get(key, 0) or counters["by_path"].get(key, 0)

    def reset_requests(self) -> None:
        self._call("POST", "/requests/reset")

    def reset(self) -> None:
        """Clock, counters, emulation storage and fault script back to the process's start state."""
        self._call("POST", "/reset")

    def close(self) -> None:
        self._session.close()


class SandboxProcess:
    """`python -m adpipeline.sandbox --port 0 ...` as a child process, stopped on exit."""

    def __init__(
        self,
        *,
        seed: int = 42,
        scale: float = 1.0,
        clock: datetime | str | None = None,
        faults_file: Path | str | None = None,
        host: str = "127.0.0.1",
        emulations: list[str] | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.args = ["--port", "0", "--host", host, "--seed", str(seed), "--scale", str(scale), "--stop-on-stdin-eof"]
        if clock is not None:
            self.args += ["--clock", clock if isinstance(clock, str) else format_datetime(clock)]
        if faults_file is not None:
            self.args += ["--faults", str(faults_file)]
        for module in emulations or []:
            self.args += ["--emulation", module]
        self.args += list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.output: deque[str] = deque(maxlen=500)  # the child's stdout+stderr, for failure messages
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.base_url = ""
        self.admin: SandboxAdmin

    def start(self) -> SandboxProcess:
        env = dict(os.environ)
        # the child must import this very package, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "adpipeline.sandbox", *self.args],
            stdin=subprocess.PIPE,  # closing it (or our death) makes the child exit: --stop-on-stdin-eof
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
        ready: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, args=(ready,), name="sandbox-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                self.base_url = ready.get_nowait()
                break
            except queue.Empty:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sandbox did not start ({' '.join(self.args)}):\n" + self.log_tail())
                # polled, not a timed wait: under a shifted clock (libfaketime) a timed wait never times out
                time.sleep(0.05)
        self.admin = SandboxAdmin(self.base_url)
        return self

    def _drain(self, ready: queue.Queue[str]) -> None:
        # keep reading so the child never blocks on a full pipe
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.output.append(line.rstrip("\n"))
            if not self.base_url and (match := _READY.search(line)):
                ready.put(match.group(1))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 50) -> str:
        return "\n".join(list(self.output)[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if getattr(self, "admin", None) is not None:
            self.admin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)  # the pipe hits EOF once the child is gone
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
