"""Incremental cursors, shared by every source: where an incremental window starts.

Upstream timestamps can lie (a record `updated_at` in the future has been seen), and the newest stored
value is the cursor: left alone, such a value makes the window start after it ends, so every later run
asks for nothing and succeeds with 0 rows. Instead the window starts from the newest stored value that is
not in the future (else from now), never after now, with a warning naming the offending value.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

# the newest stored value, and the newest one not after now: SELECT {NEWEST.format(col)} ... with (now,)
NEWEST = "max({0}), max({0}) FILTER (WHERE {0} <= %s)"


def window_start(cursor: datetime, overlap: timedelta, now: datetime, *, what: str,
                 not_future: datetime | None = None, logger: Any = None) -> tuple[datetime, str | None]:
    """(start, warning). `cursor - overlap` normally; when the cursor lies in the future, `not_future` (the
    newest stored value not after now) or else now, minus the overlap; then the warning says which value
    and what was done (also logged as a warning)."""
    if cursor <= now:
        return cursor - overlap, None
    base = min(not_future, now) if not_future is not None else now
    warning = (f"{what}: the newest stored update time {cursor.isoformat()} is in the future (now is "
               f"{now.isoformat()}); the incremental window starts from {base.isoformat()} instead "
               f"({'the newest update time not in the future' if not_future is not None else 'now'}), so it "
               "never starts after it ends. The upstream clock is wrong; the record is kept as sent.")
    (logger or log).warning(warning)
    return base - overlap, warning
