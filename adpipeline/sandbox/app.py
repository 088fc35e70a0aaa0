"""The sandbox ASGI app: emulations mounted under their prefix, the admin API, and the fault layer.

Emulation contract (a module path listed in `SandboxSettings.emulations`):
    PREFIX = "/meta"                                       # mount point
    def routes(state: SandboxState) -> list[BaseRoute]     # mounted under PREFIX
    def admin_routes(state) -> list[BaseRoute]             # optional, mounted under /_admin{PREFIX}
Emulations keep mutable state in `state.storage(name)` and derive all data from `state.rng(...)`,
`state.scale` and `state.now()`, so a seed fully determines what clients see.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Message, Receive, Scope, Send

from adpipeline.http.redact import redact
from adpipeline.sandbox.state import (
    Fault,
    SandboxState,
    format_datetime,
    load_faults_file,
    parse_datetime,
)

log = logging.getLogger(__name__)

SELFTEST_EMULATION = "adpipeline.sandbox._selftest"
OPTIONAL_EMULATIONS = (
    "adpipeline.sandbox.meta",
    "adpipeline.sandbox.breezeway",
    "adpipeline.sandbox.ga4",
)


def default_emulations() -> list[str]:
    """The self-test emulation plus whichever of the API emulations exist (they land in later issues)."""
    return [SELFTEST_EMULATION, *OPTIONAL_EMULATIONS]


@dataclass
class SandboxSettings:
    seed: int = 42
    scale: float = 1.0
    clock_start: datetime | None = None  # None -> DEFAULT_CLOCK_START (2026-11-23T12:00:00Z)
    clock_running: bool = False  # False: time moves only through /_admin/clock
    faults_file: Path | None = None
    emulations: list[str] = field(default_factory=default_emulations)


def load_emulations(names: list[str]) -> list[ModuleType]:
    modules = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # only the not-yet-written API emulations may be absent; a broken import inside one must fail
            if name in OPTIONAL_EMULATIONS and exc.name == name:
                log.debug("sandbox emulation %s not available", name)
                continue
            raise
        if name in OPTIONAL_EMULATIONS and getattr(module, "__file__", None) is None:
            continue  # a namespace package: the emulation's folder exists but has no __init__.py yet
        if not isinstance(getattr(module, "PREFIX", None), str) or not callable(getattr(module, "routes", None)):
            raise ValueError(f"{name} is not a sandbox emulation (needs PREFIX and routes(state))")
        modules.append(module)
    return modules


def build_app(settings: SandboxSettings | None = None) -> Starlette:
    settings = settings or SandboxSettings()
    initial_faults = load_faults_file(settings.faults_file) if settings.faults_file else None
    state = SandboxState(
        seed=settings.seed,
        scale=settings.scale,
        clock_start=settings.clock_start,
        clock_running=settings.clock_running,
        initial_faults=initial_faults,
    )
    emulations = load_emulations(settings.emulations)
    routes: list[BaseRoute] = []
    admin: list[BaseRoute] = _admin_routes(state, [m.PREFIX for m in emulations])
    for module in emulations:
        routes.append(Mount(module.PREFIX, routes=module.routes(state)))
        if callable(getattr(module, "admin_routes", None)):
            admin.append(Mount(module.PREFIX, routes=module.admin_routes(state)))
    routes.insert(0, Mount("/_admin", routes=admin))
    return SandboxApp(state, routes)


class SandboxApp(Starlette):
    """Starlette app whose outermost layer counts requests and applies the fault script.

    It sits outside Starlette's own middleware so it sees uvicorn's raw `send` (needed to drop
    a connection without any response) and so even faulted requests are counted.
    """

    def __init__(self, state: SandboxState, routes: list[BaseRoute]) -> None:
        super().__init__(routes=routes)
        self.sandbox = state
        self.state.sandbox = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await super().__call__(scope, receive, send)  # admin traffic is neither counted nor faulted
            return
        state = self.sandbox
        method, path = scope["method"], scope["path"]
        query_string = scope.get("query_string", b"").decode("latin-1")
        # the request log is served over HTTP and printed by failing tests: keep credentials out of it
        shown_query = redact(query_string)
        entry = state.counters.record(method, _route_template(self.router.routes, scope), path, shown_query)
        entry["at"] = state.now().isoformat()  # the sandbox's time of the request (a quota window it fell in)

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        fault = state.faults.take(method, path, parse_qs(query_string, keep_blank_values=True))
        if fault is None:
            await super().__call__(scope, receive, tracking_send)
            return
        entry["fault"] = fault.id
        if fault.drop:
            entry["status"] = "dropped"
        await self._apply_fault(fault, scope, receive, tracking_send, raw_send=send)

    async def _apply_fault(self, fault: Fault, scope: Scope, receive: Receive, send: Send, raw_send: Send) -> None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.hold:
            await self.sandbox.faults.held()
        if fault.drop:
            await _close_connection(raw_send)
            return
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in fault.headers.items()]

        if fault.status is not None:
            body, content_type = _fault_body(fault)
            start: Message = {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
            }
            await _send_response(start, body, extra, fault, send, raw_send)
            return

        if not fault.truncate:
            # pass through (with extra headers, or none: a placeholder entry in a script); stream untouched
            async def header_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": _merge_headers(message.get("headers", []), extra)}
                await send(message)

            await super().__call__(scope, receive, header_send)
            return

        # truncating the real response needs its whole body first
        captured: dict[str, Any] = {"start": None, "body": bytearray()}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        await super().__call__(scope, receive, capture)
        await _send_response(captured["start"], bytes(captured["body"]), extra, fault, send, raw_send)


async def _send_response(start: Message, body: bytes, extra: list[tuple[bytes, bytes]], fault: Fault, send: Send, raw_send: Send) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers = _merge_headers(headers, extra)
    if not fault.truncate:
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    half = body[: len(body) // 2]
    if fault.truncate == "short":
        headers.append((b"content-length", str(len(half)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": half, "more_body": False})
        return
    # "abort": promise the full body, deliver half, hang up
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": half, "more_body": True})
    await _close_connection(raw_send)


async def _close_connection(raw_send: Send) -> None:
    """Close the client's socket from inside an ASGI app (uvicorn only).

    uvicorn's `send` is a bound method of its request cycle, which holds the transport. Closing
    it flushes what was already written, then the client sees EOF: no response at all for a drop,
    an incomplete body for a truncation.
    """
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: connection dropped (server is not uvicorn)")
    transport.close()
    for _ in range(50):  # let uvicorn notice, so it does not try to answer 500 on a closed socket
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0.001)


def _fault_body(fault: Fault) -> tuple[bytes, str]:
    body = fault.body
    if body is None:
        body = {"error": {"message": f"sandbox fault {fault.id}: HTTP {fault.status}", "code": fault.status}}
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), fault.content_type or "application/json"
    return str(body).encode(), fault.content_type or "text/plain; charset=utf-8"


def _merge_headers(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    names = {k for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


def _route_template(routes: list[BaseRoute], scope: Scope, prefix: str = "") -> str | None:
    """`/meta/{version}/act_{id}/insights` for a request to `/meta/v24.0/act_1/insights`."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            found = _route_template(route.routes, {**scope, **child}, prefix + route.path)
            if found:
                return found
            continue
        template = prefix + getattr(route, "path", "")
        if match is Match.FULL:
            return template
        partial = partial or template  # path matched, method did not (405)
    return partial


# ---- admin API --------------------------------------------------------------------------------


def _admin_routes(state: SandboxState, prefixes: list[str]) -> list[BaseRoute]:
    # async endpoints on purpose: they run on the event loop, like the fault layer, so no thread races

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "seed": state.seed,
                "scale": state.scale,
                "now": format_datetime(state.now()),
                "emulations": prefixes,
            }
        )

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await _json_body(request)
                if "now" in body:
                    state.clock.set(parse_datetime(body["now"]))
                if "advance_seconds" in body:
                    state.clock.advance(float(body["advance_seconds"]))
                if "running" in body:
                    state.clock.set_running(bool(body["running"]))
            except (TypeError, ValueError) as exc:
                return _bad_request(f"invalid clock update: {exc}")
        return JSONResponse({"now": format_datetime(state.now()), "running": state.clock.running})

    async def requests_(request: Request) -> JSONResponse:
        return JSONResponse(state.counters.snapshot())

    async def requests_reset(request: Request) -> JSONResponse:
        state.counters.reset()
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                added = state.faults.add(await _json_body(request))
            except (KeyError, TypeError, ValueError) as exc:
                return _bad_request(f"invalid fault: {exc}")
            return JSONResponse({"added": [f.id for f in added], "faults": state.faults.list()})
        if request.method == "DELETE":
            state.faults.clear()
        return JSONResponse({"faults": state.faults.list()})

    async def fault_delete(request: Request) -> JSONResponse:
        if not state.faults.remove(request.path_params["fault_id"]):
            return JSONResponse({"error": "no such fault"}, status_code=404)
        return JSONResponse({"faults": state.faults.list()})

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"ok": True, "now": format_datetime(state.now())})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/clock", clock, methods=["GET", "POST"]),
        Route("/requests", requests_, methods=["GET"]),
        Route("/requests/reset", requests_reset, methods=["POST"]),
        Route("/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/faults/{fault_id:int}", fault_delete, methods=["DELETE"]),
        Route("/reset", reset, methods=["POST"]),
    ]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}  # JSONDecodeError is a ValueError: callers answer 400


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)
