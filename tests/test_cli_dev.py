"""`adpipeline dev` starts everything, serves the UI, and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from adpipeline.warehouse.embedded import EmbeddedServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_location_status(port: int, timeout: float = 180) -> tuple[str, str]:
    """(loadStatus, what the location resolved to) of the adpipeline code location, once it stopped loading."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus " \
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
        (entry,) = [e for e in entries if e["name"] == "adpipeline"]
        loaded = entry["locationOrLoadError"] or {}
        if entry["loadStatus"] == "LOADED" or time.monotonic() > deadline:
            return entry["loadStatus"], loaded.get("__typename", "") + loaded.get("message", "")
        time.sleep(1)


def test_dev_serves_the_ui_and_ctrl_c_stops_everything(server_home):
    tmp_path = server_home
    port = free_port()
    # a newcomer's shell: none of the project's settings, no API URLs or credentials from other tests
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADPIPELINE_", "DAGSTER_", "VIRTUAL_ENV", "META_", "BREEZEWAY_", "GA4_", "DBT_"))}
    env["ADPIPELINE_HOME"] = str(tmp_path / "home")
    env["PATH"] = "/usr/bin:/bin"  # as `.venv/bin/adpipeline dev` from a shell without the venv activated
    proc = subprocess.Popen([str(Path(sys.executable).with_name("adpipeline")), "dev", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        deadline, info = time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                    info = response.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert info and "dagster_webserver_version" in info, proc.stdout.read() if proc.poll() is not None else ""
        assert code_location_status(port) == ("LOADED", "RepositoryLocation")  # not "Failed"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert any("dagster" in " ".join(p.cmdline()) for p in descendants)
        assert EmbeddedServer(tmp_path / "home").running_port() is not None
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("adpipeline dev did not stop within 90 s of Ctrl-C:\n" + proc.stdout.read()) from None
        output = proc.stdout.read()
        assert proc.returncode == 0, output
        time.sleep(1)
        assert [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
        assert EmbeddedServer(tmp_path / "home").running_port() is None  # it started the warehouse: stopped
    finally:
        # a failed assertion must not leave a webserver and daemon behind: children that started a process group
        # of their own (Dagster code servers, the warehouse) would outlive killing this group
        if proc.poll() is None:
            descendants += psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
        for child in descendants:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        EmbeddedServer(tmp_path / "home").stop()
