"""What time it is: the project's one clock. Nothing else in `adpipeline/` reads the time of day.

`now()` is the pipeline's time: the day a feed is on, token lifetimes, lateness, sync-log stamps.
It is the host's clock, unless ADPIPELINE_CLOCK_URL names a clock to follow — the sandbox's
`/_admin/clock`, set by the stack (demo, dev) and the tests when the sources point at the sandbox, whose
clock is usually not the wall clock (tests freeze it on a fixed day).

`sleep(seconds)` waits in the pipeline's time: on the host's clock, except while following a clock that is
frozen (the tests' sandbox), where waiting moves that clock forward instead — a rate-limit block or a quota
reset announced in the followed clock's time then ends without wall time passing, as it would in production.
`monotonic()` measures such waits too (retry budgets).

`system_now()` is the host's clock itself, for what is stamped by the host rather than by the pipeline:
Dagster's own records (daemon heartbeats, ticks, run times), google-auth's token expiry, and the
sandbox's clock when it runs with real time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone

CLOCK_URL_ENV = "ADPIPELINE_CLOCK_URL"
_local = threading.local()
_offsets: dict[str, timedelta] = {}  # clock URL -> its last known lead over the host's clock
_waited = 0.0  # seconds sleep() moved a frozen followed clock forward (monotonic() counts them)
_waited_lock = threading.Lock()
_sleep_lock = threading.Lock()  # one frozen-clock advance at a time (see sleep)
log = logging.getLogger(__name__)


def _forget_sessions() -> None:
    """In a forked child: sessions of its own. An inherited keep-alive socket is the parent's too, and two
    processes reading one connection take each other's answers (ReadTimeout, ConnectionError, half a body)."""
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_sessions)


class ClockUnavailable(RuntimeError):
    """The clock named by ADPIPELINE_CLOCK_URL did not answer."""


def system_now() -> datetime:
    """The host's clock, in UTC."""
    return datetime.now(timezone.utc)


def now() -> datetime:
    """The pipeline's time, in UTC: ADPIPELINE_CLOCK_URL's answer when set, else the host's clock."""
    url = os.environ.get(CLOCK_URL_ENV)
    return _remote(url) if url else system_now()


def sleep(seconds: float) -> None:
    """Wait `seconds` of the pipeline's time (see the module docstring)."""
    global _waited
    import requests

    url = os.environ.get(CLOCK_URL_ENV)
    if url and seconds > 0:
        with _waited_lock:
            until = _waited + seconds
        try:
            # threads waiting at once overlap, as they do on a running clock: the frozen clock moves to the
            # latest end among them, not by the sum of their waits (parallel calls held by one throttle)
            with _sleep_lock:
                if _followed(url).get("running") is False:
                    remaining = until - _waited
                    if remaining > 0:
                        _followed(url, {"advance_seconds": remaining})
                        with _waited_lock:
                            _waited += remaining
                    return
        except (requests.RequestException, ValueError):
            pass  # the clock is gone: wait on the host's, as a retry must wait somehow
    time.sleep(seconds)


def monotonic() -> float:
    """A steady clock (seconds) in the pipeline's time, for budgets of waiting: the host's monotonic clock plus
    every wait sleep() spent moving a frozen followed clock (so a retry budget runs out there too)."""
    with _waited_lock:
        return time.monotonic() + _waited


def _followed(url: str, advance: dict | None = None) -> dict:
    """The followed clock's answer ({"now", "running"}), after moving it when `advance` is given."""
    import requests

    session = getattr(_local, "session", None)
    if session is None:  # one keep-alive session per thread: a clock read is a local round trip, ~1 ms
        session = _local.session = requests.Session()
    answer = session.post(url, json=advance, timeout=10) if advance else session.get(url, timeout=10)
    answer.raise_for_status()
    return answer.json()


def _remote(url: str) -> datetime:
    import requests

    try:
        value = _followed(url)["now"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        if url in _offsets:  # keep time going (a failure must still be stamped) from the last known answer
            log.warning("the clock at %s did not answer (%s); continuing from its last known time",
                        url, type(exc).__name__)
            return system_now() + _offsets[url]
        raise ClockUnavailable(f"the clock at {CLOCK_URL_ENV}={url} did not answer ({type(exc).__name__}); "
                               f"unset {CLOCK_URL_ENV} to use the host's clock") from None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    _offsets[url] = when - system_now()
    return when
