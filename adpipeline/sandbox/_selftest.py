"""A tiny built-in emulation under /_selftest, used ONLY to test the sandbox framework and the shared
HTTP client (fault injection, counters, clock, seeding, scale, and the three paging styles).
It imitates no real API; nothing in the pipeline calls it.

    GET  /_selftest/items?limit=&page=       page-number envelope (Breezeway-like), scaled(250) rows
    GET  /_selftest/cursor?limit=&after=     cursor + absolute `paging.next` (Meta-like); some pages are
                                             short or EMPTY and still have `next`; scaled(100) rows
    POST /_selftest/report {"limit","offset"} offset paging with `rowCount` (GA4-like); scaled(120) rows
    GET  /_selftest/things/{thing_id}        one row (exercises route templates in the counters)
    GET  /_selftest/now                      the sandbox clock
"""

from __future__ import annotations

import base64
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from adpipeline.sandbox.state import SandboxState, format_datetime

PREFIX = "/_selftest"

ITEMS_BASE, CURSOR_BASE, REPORT_BASE = 250, 100, 120


def _row(state: SandboxState, kind: str, index: int) -> dict[str, Any]:
    rng = state.rng(f"selftest.{kind}:{index}")  # per row, so any page can be produced alone
    return {
        "id": index + 1,
        "name": f"{kind}-{index + 1}",
        "value": round(rng.uniform(0, 1000), 2),
        "color": rng.choice(["red", "green", "blue", "amber"]),
    }


def _int_param(request: Request, name: str, default: int, lo: int = 0) -> int:
    try:
        return max(lo, int(request.query_params.get(name, default)))
    except ValueError:
        return default


def _cursor_pages(state: SandboxState, total: int, limit: int) -> list[int]:
    """Deterministic page sizes: full, short and empty pages mixed (page 2 is always empty)."""
    rng = state.rng("selftest.cursor.pages")
    sizes: list[int] = []
    remaining = total
    while remaining > 0:
        roll = rng.random()
        if len(sizes) == 1 or roll < 0.15:
            size = 0
        elif len(sizes) == 2 or roll < 0.45:
            size = rng.randint(1, max(1, limit - 1))
        else:
            size = limit
        size = min(size, remaining)
        sizes.append(size)
        remaining -= size
    return sizes or [0]


def _encode(n: int) -> str:
    return base64.urlsafe_b64encode(f"page:{n}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return int(raw.split(":", 1)[1])


def routes(state: SandboxState) -> list[BaseRoute]:
    async def items(request: Request) -> JSONResponse:
        limit = _int_param(request, "limit", 100, lo=1)
        page = _int_param(request, "page", 1, lo=1)
        total = state.scaled(ITEMS_BASE)
        start = (page - 1) * limit
        rows = [_row(state, "item", i) for i in range(start, min(start + limit, total))]
        return JSONResponse(
            {
                "limit": limit,
                "page": page,
                "total_pages": math.ceil(total / limit),
                "total_results": total,
                "results": rows,
            }
        )

    async def cursor(request: Request) -> JSONResponse:
        limit = _int_param(request, "limit", 25, lo=2)
        after = request.query_params.get("after")
        try:
            page = _decode(after) if after else 0
        except (ValueError, IndexError):
            return JSONResponse({"error": {"message": "Invalid cursor", "code": 100}}, status_code=400)
        sizes = _cursor_pages(state, state.scaled(CURSOR_BASE), limit)
        if page >= len(sizes):
            return JSONResponse({"data": [], "paging": {}})
        start = sum(sizes[:page])
        rows = [_row(state, "cursor", i) for i in range(start, start + sizes[page])]
        paging: dict[str, Any] = {"cursors": {"before": _encode(page), "after": _encode(page + 1)}}
        if page + 1 < len(sizes):
            # absolute URL echoing every query parameter (access_token included), as Meta does
            paging["next"] = str(request.url.include_query_params(after=_encode(page + 1)))
        return JSONResponse({"data": rows, "paging": paging})

    async def report(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            limit = int(body.get("limit", 10000))
            offset = int(body.get("offset", 0))
        except (ValueError, TypeError, AttributeError):
            return JSONResponse({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, status_code=400)
        total = state.scaled(REPORT_BASE)
        rows = [
            {"dimensionValues": [{"value": r["name"]}], "metricValues": [{"value": str(r["value"])}]}
            for r in (_row(state, "report", i) for i in range(offset, min(offset + limit, total)))
        ]
        return JSONResponse({"rows": rows, "rowCount": total})

    async def thing(request: Request) -> JSONResponse:
        thing_id = request.path_params["thing_id"]
        return JSONResponse({"id": thing_id, "value": round(state.rng(f"selftest.thing:{thing_id}").random(), 6)})

    async def now(request: Request) -> JSONResponse:
        return JSONResponse({"now": format_datetime(state.now())})

    return [
        Route("/items", items, methods=["GET"]),
        Route("/cursor", cursor, methods=["GET"]),
        Route("/report", report, methods=["POST"]),
        Route("/things/{thing_id}", thing, methods=["GET"]),
        Route("/now", now, methods=["GET"]),
    ]
