"""`adpipeline dev`: the Dagster UI and daemon on the embedded warehouse and the sandbox APIs.

`dagster dev` runs in its own process group so that Ctrl-C (or SIGTERM) reaches all of its children
(webserver, daemon, code server) even when we ourselves were started in the background from a script
(ARCHITECTURE: a background `dagster dev` ignores SIGINT otherwise). On exit we stop what we started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from adpipeline.stack import PROJECT_DIR, local_stack

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 30


def run_dev(port: int = 3000, host: str = "127.0.0.1") -> int:
    with local_stack(sandbox=True) as stack:
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_DIR / "workspace.yaml"),
               "-h", host, "-p", str(port)]
        log.info("sandbox APIs at %s; warehouse %s", stack.sandbox_url, stack.warehouse_url)
        log.info("starting Dagster UI on http://%s:%s (Ctrl-C stops everything)", host, port)
        child = subprocess.Popen(cmd, cwd=PROJECT_DIR, start_new_session=True, env=os.environ.copy())
        stopping = False

        def forward(signum, _frame) -> None:
            nonlocal stopping
            stopping = True
            _signal_group(child, signal.SIGINT)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = _wait_bounded_once_stopping(child, lambda: stopping)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if child.poll() is None:  # we are leaving on an error: stop it as Ctrl-C does
                _signal_group(child, signal.SIGINT)
                _wait_bounded_once_stopping(child, lambda: True)
            _signal_group(child, signal.SIGKILL)  # stragglers of the group (code servers)
        log.info("stopped")
        return 0 if stopping else code


def _wait_bounded_once_stopping(child: subprocess.Popen, stopping) -> int:
    """dagster dev's exit code. Once Ctrl-C was forwarded, it gets SHUTDOWN_GRACE_S to stop (it waits for its
    daemon's in-flight ticks and its code servers), then its whole group is killed: Ctrl-C always stops."""
    deadline = None
    while True:
        try:  # a short timed wait polls: subprocess waits by sleeping, which libfaketime does not stall
            return child.wait(1)
        except subprocess.TimeoutExpired:
            pass
        if stopping():
            deadline = deadline or time.monotonic() + SHUTDOWN_GRACE_S
            if time.monotonic() > deadline:
                log.warning("dagster dev did not stop in %s s; killing it", SHUTDOWN_GRACE_S)
                _signal_group(child, signal.SIGKILL)
                return child.wait()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass
