"""Serve the sandbox with uvicorn: `adpipeline sandbox ...` and `python -m adpipeline.sandbox ...`."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from pathlib import Path

import uvicorn

from adpipeline.sandbox.app import SandboxSettings, build_app
from adpipeline.sandbox.state import parse_datetime

READY_PREFIX = "sandbox listening on "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=42, help="seed for all generated data (default 42)")
    parser.add_argument("--scale", type=float, default=1.0, help="row-count multiplier (default 1.0)")
    parser.add_argument(
        "--clock",
        default=None,
        help="start time, ISO 8601 (default 2026-11-23T12:00:00Z), or 'now' for the real time",
    )
    parser.add_argument(
        "--clock-running",
        action="store_true",
        help="let the clock advance with real time (default: frozen until moved via /_admin/clock)",
    )
    parser.add_argument(
        "--emulation",
        action="append",
        default=None,
        metavar="MODULE",
        help="emulation module to mount (repeatable; default: _selftest plus meta, breezeway, ga4)",
    )
    parser.add_argument("--faults", type=Path, default=None, help="YAML/JSON fault script applied at start")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    parser.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (used by test harnesses so a dead parent never leaves a server behind)",
    )


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    clock_start, running = None, bool(args.clock_running)
    if args.clock == "now":
        from adpipeline.clock import system_now

        clock_start, running = system_now(), True
    elif args.clock:
        clock_start = parse_datetime(args.clock)
    settings = SandboxSettings(
        seed=args.seed,
        scale=args.scale,
        clock_start=clock_start,
        clock_running=running,
        faults_file=args.faults,
    )
    if getattr(args, "emulation", None):
        settings.emulations = list(args.emulation)
    return settings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # parents (SandboxProcess, the CLI) wait for this exact line to learn the port
            print(self.ready_line, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        app = build_app(settings_from_args(args))
        sock = _bind(args.host, args.port)
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,  # request lines carry query strings (tokens); counters are the record
        lifespan="off",
        timeout_keep_alive=75,  # longer than any test: avoids clients racing an idle-connection close
        timeout_graceful_shutdown=3,
    )
    server = _Server(config, f"{READY_PREFIX}http://{host}:{port}")
    if args.stop_on_stdin_eof:

        def watch_stdin() -> None:
            sys.stdin.read()  # returns at EOF, i.e. when the parent closes the pipe or dies
            server.should_exit = True

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop, not a crash
    finally:
        sock.close()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adpipeline sandbox", description="Local emulation of the Meta, Breezeway and GA4 APIs.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
