"""Local emulation of the Meta Marketing, Breezeway and GA4 APIs: product code, always its own process.

Run it with `adpipeline sandbox --port N` or `python -m adpipeline.sandbox --port 0` (prints
`sandbox listening on http://HOST:PORT` when ready). Emulations plug in through `app.py`'s contract
(`PREFIX` + `routes(state)`); `_selftest` is a tiny built-in one that exists only to test the framework.

Admin API (never counted, never faulted):
    GET  /_admin/health
    GET  /_admin/clock                     -> {"now": iso, "running": bool}
    POST /_admin/clock                     {"now": iso} | {"advance_seconds": n} | {"running": bool}
    GET  /_admin/requests                  -> {"total", "by_route": {"GET /p/{x}": n}, "by_path", "recent"}
    POST /_admin/requests/reset
    GET  /_admin/faults | POST (a fault, a list, or {"faults": [...]}) | DELETE (all) | DELETE /_admin/faults/{id}
    POST /_admin/reset                     clock, counters, storage and fault script back to their start state

Fault script (POST /_admin/faults, or `--faults FILE` in YAML/JSON), an ordered list; for each request the
first live fault matching it decides, so faults for one route are consumed in order:
    - path: /meta/*/insights        # glob on the concrete path ("*" spans "/"); or path_regex: (fullmatch)
      method: GET                   # default "*"
      query: {page: "2"}            # optional: these query parameters must be present with these values
      status: 429                   # answer this instead of the endpoint...
      body: {error: {code: 17}}     # ...with this body (mapping/list -> JSON, string -> text)
      content_type: text/html       # optional override
      headers: {Retry-After: "30"}  # added to the response (also to pass-through responses)
      delay: 1.5                    # seconds, before anything else
      hold: true                    # then wait until the fault script is cleared (DELETE /_admin/faults or a
                                    #   reset): a request kept open exactly as long as a test needs
      truncate: abort | short       # cut the body in half (abort: connection closes mid-body;
                                    #   short: Content-Length matches the cut, JSON is broken)
      drop: true                    # close the connection without any response
      count: 2                      # next N matching requests (default 1; null = unlimited)
      probability: 0.3              # fire on a seeded, deterministic share of matches (count defaults to null)
"""

from adpipeline.sandbox.app import SandboxSettings, build_app
from adpipeline.sandbox.state import DEFAULT_CLOCK_START, Fault, SandboxState

__all__ = ["DEFAULT_CLOCK_START", "Fault", "SandboxSettings", "SandboxState", "build_app"]
