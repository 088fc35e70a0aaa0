"""JSON for the million-row paths: orjson when present (3-10x faster; dagster-dbt brings it), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the stdlib fallback
    orjson = None


def loads(data: bytes | str) -> Any:
    return orjson.loads(data) if orjson else json.loads(data)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj) if orjson else json.dumps(obj, separators=(",", ":")).encode()
