"""Meta Marketing (Graph) API emulation, mounted at /meta: see `graph.py` for the endpoints and the admin
script, `world.py` for the data, `limits.py` for the usage meters."""

from __future__ import annotations

from adpipeline.sandbox.meta.graph import (
    DEMO_ACCESS_TOKEN,
    DEMO_APP_ID,
    DEMO_APP_SECRET,
    GraphError,
    MetaSandbox,
    TokenInfo,
    admin_routes,
    routes,
)
from adpipeline.sandbox.meta.world import ACCOUNTS

PREFIX = "/meta"
API_VERSION = "v24.0"


def demo_environment(base_url: str) -> dict[str, str]:
    """Environment that points the pipeline's Meta source at a sandbox serving on `base_url`.

    The credentials are the sandbox's demo values (it accepts nothing else), not secrets."""
    base = base_url.rstrip("/")
    return {
        "META_GRAPH_URL": f"{base}{PREFIX}/{API_VERSION}",
        "META_ACCESS_TOKEN": DEMO_ACCESS_TOKEN,
        "META_APP_ID": DEMO_APP_ID,
        "META_APP_SECRET": DEMO_APP_SECRET,
    }


__all__ = [
    "ACCOUNTS", "API_VERSION", "DEMO_ACCESS_TOKEN", "DEMO_APP_ID", "DEMO_APP_SECRET", "PREFIX", "GraphError",
    "MetaSandbox", "TokenInfo", "admin_routes", "demo_environment", "routes",
]
