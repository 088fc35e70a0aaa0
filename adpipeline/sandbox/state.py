"""Mutable state of one sandbox process: clock, seeded randomness, request counters, fault script.

Everything an emulation needs to be deterministic comes from here: data is derived from
`rng(name)` (seed + name, never the wall clock), time from `now()` (a clock that tests move).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

DEFAULT_CLOCK_START = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


def parse_datetime(value: str | datetime) -> datetime:
    """ISO 8601 (a trailing `Z` allowed) -> aware UTC datetime; naive values are taken as UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_datetime(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Clock:
    """The sandbox's notion of "now". Frozen by default (fully deterministic); can run with real time."""

    def __init__(self, start: datetime, running: bool = False) -> None:
        self._lock = threading.Lock()
        self._start = parse_datetime(start)
        self._start_running = running
        self.set(self._start, running)

    @property
    def start(self) -> datetime:
        """The time the clock started at (emulations anchor their data set on it)."""
        return self._start

    def now(self) -> datetime:
        with self._lock:
            if self._running:
                return self._base + timedelta(seconds=time.monotonic() - self._anchor)
            return self._base

    @property
    def running(self) -> bool:
        return self._running

    def set(self, value: str | datetime, running: bool | None = None) -> None:
        with self._lock:
            self._base = parse_datetime(value)
            self._anchor = time.monotonic()
            if running is not None:
                self._running = running

    def set_running(self, running: bool) -> None:
        self.set(self.now(), running)

    def advance(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))

    def reset(self) -> None:
        self.set(self._start, self._start_running)


@dataclass
class RequestCounters:
    """Server-side request counts, by route template (`GET /meta/{version}/act_{id}/insights`) and concrete path."""

    total: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_path: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, route: str | None, path: str, query: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "method": method,
            "route": route,
            "path": path,
            "query": query,
            "status": None,
            "fault": None,
        }
        with self._lock:
            self.total += 1
            self.by_route[f"{method} {route or '(no route)'}"] += 1
            self.by_path[f"{method} {path}"] += 1
            self.recent.append(entry)
        return entry  # the caller fills in status / fault once known

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.by_route.clear()
            self.by_path.clear()
            self.recent.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_route": dict(self.by_route),
                "by_path": dict(self.by_path),
                "recent": list(self.recent),
            }


TruncateMode = Literal["abort", "short"]
_FAULT_KEYS = {
    "method", "path", "path_regex", "query", "status", "body", "content_type", "headers",
    "delay", "hold", "truncate", "drop", "count", "probability",
}  # fmt: skip


@dataclass
class Fault:
    """One entry of the fault script. See `adpipeline.sandbox` for the file format.

    Matching: `method` ("*" = any) and the concrete request path by glob (`path`) or
    `re.fullmatch` (`path_regex`), optionally a subset of query parameters (`query`).
    Effects (combinable): `delay` seconds first; `hold` the request until the script is cleared; then `drop` the
    connection, or answer
    `status` + `body` instead of the real endpoint, or pass through to the real endpoint;
    `headers` are added to whatever is sent; `truncate` cuts the body in half ("abort": the
    declared Content-Length is the full size and the connection closes mid-body; "short":
    Content-Length matches the cut body, so the client gets a complete response with broken JSON).
    A fault with no effect lets the matching requests through (a placeholder in a script).
    Trigger: the next `count` matching requests (None = unlimited), each with `probability`
    (a seeded roll, deterministic for a given seed and fault spec).
    """

    path: str | None = None
    path_regex: str | None = None
    method: str = "*"
    query: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    body: Any = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: bool = False
    truncate: TruncateMode | None = None
    drop: bool = False
    count: int | None = 1
    probability: float | None = None
    # bookkeeping
    id: int = 0
    fired: int = 0
    _rng: random.Random | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError(f"a fault must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; allowed: {sorted(_FAULT_KEYS)}")
        if bool(spec.get("path")) == bool(spec.get("path_regex")):
            raise ValueError("a fault needs exactly one of 'path' (glob) or 'path_regex'")
        truncate = spec.get("truncate")
        if truncate is True:
            truncate = "abort"
        elif truncate is False:
            truncate = None
        if truncate not in (None, "abort", "short"):
            raise ValueError("truncate must be true, 'abort' or 'short'")
        probability = spec.get("probability")
        if probability is not None and not 0.0 <= float(probability) <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        # "next request" unless the fault is probabilistic; an explicit null count = unlimited
        count = spec["count"] if "count" in spec else (None if probability is not None else 1)
        if count is not None and int(count) < 1:
            raise ValueError("count must be >= 1 or null (unlimited)")
        status = spec.get("status")
        if status is not None and not 100 <= int(status) <= 599:
            raise ValueError("status must be an HTTP status code")
        if spec.get("path_regex"):
            re.compile(spec["path_regex"])
        return cls(
            path=spec.get("path"),
            path_regex=spec.get("path_regex"),
            method=str(spec.get("method", "*")).upper(),
            query={str(k): str(v) for k, v in (spec.get("query") or {}).items()},
            status=int(status) if status is not None else None,
            body=spec.get("body"),
            content_type=spec.get("content_type"),
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
            delay=float(spec.get("delay") or 0.0),
            hold=bool(spec.get("hold", False)),
            truncate=truncate,
            drop=bool(spec.get("drop", False)),
            count=int(count) if count is not None else None,
            probability=float(probability) if probability is not None else None,
        )

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "query": self.query,
            "status": self.status,
            "body": self.body,
            "content_type": self.content_type,
            "headers": self.headers,
            "delay": self.delay,
            "hold": self.hold,
            "truncate": self.truncate,
            "drop": self.drop,
            "count": self.count,
            "probability": self.probability,
        }
        if self.path_regex:
            out["path_regex"] = self.path_regex
        else:
            out["path"] = self.path
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fired": self.fired, **self.spec()}

    def matches(self, method: str, path: str, query: dict[str, list[str]]) -> bool:
        if self.method not in ("*", method):
            return False
        if self.path_regex is not None:
            if not re.fullmatch(self.path_regex, path):
                return False
        elif not fnmatch.fnmatchcase(path, self.path or ""):
            return False
        return all(value in query.get(key, []) for key, value in self.query.items())

    @property
    def passthrough(self) -> bool:
        return self.status is None and not self.drop and not self.truncate


class FaultScript:
    """Ordered fault list. For each request the FIRST live matching fault decides; when its
    count is used up it is removed and the next one for that route takes over."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self._released = asyncio.Event()  # set by clear(): held requests go on; a new one per script

    def add(self, specs: list[dict[str, Any]] | dict[str, Any]) -> list[Fault]:
        if isinstance(specs, dict):
            specs = specs["faults"] if "faults" in specs else [specs]
        faults = [Fault.from_dict(s) for s in specs]  # validate all before adding any
        with self._lock:
            for fault in faults:
                fault.id = self._next_id
                self._next_id += 1
                # seeded from the spec (not the id) so re-adding the same fault replays the same rolls
                key = json.dumps(fault.spec(), sort_keys=True, default=str)
                fault._rng = random.Random(f"{self._seed}:fault:{key}")
                self._faults.append(fault)
        return faults

    def take(self, method: str, path: str, query: dict[str, list[str]]) -> Fault | None:
        """The fault to apply to this request (consuming one use), or None."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path, query):
                    continue
                if fault.probability is not None:
                    assert fault._rng is not None
                    if fault._rng.random() >= fault.probability:
                        return None  # the first matching fault decides, even when its roll misses
                fault.fired += 1
                if fault.count is not None and fault.fired >= fault.count:
                    self._faults.remove(fault)
                return fault
            return None

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    async def held(self) -> None:
        """Wait until the script is next cleared (a `hold` fault's request)."""
        await self._released.wait()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._released.set()
            self._released = asyncio.Event()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]


def load_faults_file(path: Path) -> list[dict[str, Any]]:
    """A YAML or JSON file holding a list of faults, or a mapping with a `faults` list."""
    data = yaml.safe_load(Path(path).read_text()) or []
    if isinstance(data, dict):
        data = data.get("faults", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of faults or a mapping with 'faults'")
    return data


class SandboxState:
    """Shared by the admin API, the fault layer and every emulation of one sandbox process."""

    def __init__(
        self,
        seed: int = 42,
        scale: float = 1.0,
        clock_start: datetime | None = None,
        clock_running: bool = False,
        initial_faults: list[dict[str, Any]] | None = None,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.clock = Clock(clock_start or DEFAULT_CLOCK_START, running=clock_running)
        self.counters = RequestCounters()
        self.faults = FaultScript(seed)
        self._initial_faults = list(initial_faults or [])
        self._storage: dict[str, dict[str, Any]] = {}
        self._reset_hooks: list[Callable[[], None]] = []
        if self._initial_faults:
            self.faults.add(self._initial_faults)

    def now(self) -> datetime:
        return self.clock.now()

    def rng(self, name: str) -> random.Random:
        """A fresh generator for (seed, name): same name -> same sequence, in any process.
        Name it after the thing generated (e.g. "meta.insights:act_1:2026-11-01") so data does
        not depend on the order in which clients ask for it."""
        return random.Random(f"{self.seed}:{name}")

    def scaled(self, base: int) -> int:
        """Row count for an entity whose count is `base` at scale 1.0."""
        return max(0, round(base * self.scale))

    def storage(self, name: str) -> dict[str, Any]:
        """A per-emulation mutable dict (issued tokens, async jobs...), emptied by `reset()`."""
        return self._storage.setdefault(name, {})

    def on_reset(self, hook: Callable[[], None]) -> None:
        self._reset_hooks.append(hook)

    def reset(self) -> None:
        """Back to the state at start: clock, counters, the startup fault script, emulation storage."""
        self.clock.reset()
        self.counters.reset()
        self.faults.clear()
        if self._initial_faults:
            self.faults.add(self._initial_faults)
        for store in self._storage.values():
            store.clear()
        for hook in self._reset_hooks:
            hook()
