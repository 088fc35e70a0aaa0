"""The HTTP client every source builds on: attempts counted, errors classified, bounded retries, paging.

A source subclasses `ApiClient` and overrides only what its API does differently:
    classify(response)  -> ApiError | None   its error codes (e.g. Meta's codes in a 400 body)
    throttle(response)                       slow down proactively from usage headers / quota fields
    prepare(spec)       -> RequestSpec       per-attempt auth (a token refreshed between attempts)
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import random
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable, Iterator, Protocol

import requests

from adpipeline import clock
from adpipeline.http import fastjson
from adpipeline.http.errors import ApiError, ErrorKind
from adpipeline.http.redact import SENSITIVE_FIELDS, install_log_redaction, redact, register_secret

_ABSOLUTE = re.compile(r"^https?://", re.I)
_AUTH_VALUE = re.compile(r"^\s*(?:\w+\s+)?(\S+)\s*$")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts AND total time (measured by the client's clock)."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_seconds: float = 300.0
    jitter: bool = True

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Wait after failed attempt number `attempt` (1-based): uniform(0, min(max, base * 2^(attempt-1)))."""
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(0.0, cap) if self.jitter else cap


@dataclass(frozen=True)
class RequestSpec:
    """One request, as paging strategies see and produce it. `url` is a path under base_url or absolute."""

    method: str = "GET"
    url: str = ""
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None

    def replace(self, **changes: Any) -> RequestSpec:
        return dataclasses.replace(self, **changes)


THROTTLED_ATTEMPTS_CEILING = 50


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - clock.now()).total_seconds())


def _full_url(url: str, params: dict[str, Any] | None) -> str:
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, params)
    except requests.RequestException:
        return url
    return prepared.url or url


class ApiClient:
    source: str = "api"

    def __init__(
        self,
        base_url: str = "",
        *,
        source: str | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = clock.monotonic,
        sleep: Callable[[float], None] = clock.sleep,
        rng: random.Random | None = None,
        max_in_flight: int = 4,
    ) -> None:
        install_log_redaction()  # any process that talks to an API gets masked logs
        self.base_url = base_url.rstrip("/")
        if source:
            self.source = source
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.log = logging.getLogger(f"adpipeline.http.{self.source}")
        self.calls = 0  # every HTTP attempt, retries included (goes to Dagster metadata / the sync log)
        self.calls_by_scope: Counter[str | None] = Counter()
        self.retries = 0
        self._lock = threading.Lock()
        # shared by every thread using this client: at most `max_in_flight` requests at once, a pause one
        # thread is told to take holds them all, and near a rate limit (`one_at_a_time`) calls go singly
        self._in_flight = threading.BoundedSemaphore(max(1, max_in_flight))
        self._single = threading.Lock()
        self._resume_at = 0.0
        self.one_at_a_time = False

    # ---- hooks for sources -------------------------------------------------------------------

    def classify(self, response: requests.Response) -> ApiError | None:
        """None for a usable response, else the ApiError. Default rules by HTTP status."""
        status = response.status_code
        if status < 400:
            return None
        message, code, subcode = self.error_details(response)
        if status == 401:
            kind = ErrorKind.AUTH
        elif status == 403:
            kind = ErrorKind.PERMISSION
        elif status == 429:
            kind = ErrorKind.THROTTLED
        elif status == 408 or status >= 500:
            kind = ErrorKind.TRANSIENT
        else:
            kind = ErrorKind.BAD_REQUEST
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ApiError(kind, message, status=status, code=code, subcode=subcode, retry_after=retry_after)

    def throttle(self, response: requests.Response) -> None:
        """Called after every successful response; may `self.hold(...)` the next calls."""

    def hold(self, seconds: float) -> None:
        """No call of this client, from any thread, starts in the next `seconds`; this thread waits them out."""
        with self._lock:
            self._resume_at = max(self._resume_at, self.clock() + seconds)
        self.sleep(seconds)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """A slot for one request: within the in-flight cap, after any pause, singly near a limit."""
        with self._in_flight:
            single = self.one_at_a_time
            if single:
                self._single.acquire()
            try:
                wait = self._resume_at - self.clock()
                if wait > 0:
                    self.sleep(wait)
                self.admit()
                yield
            finally:
                if single:
                    self._single.release()

    def prepare(self, spec: RequestSpec) -> RequestSpec:
        """Called before every attempt (so auth can be refreshed between retries)."""
        return spec

    def admit(self) -> None:
        """Called when a request has its turn, just before it is sent: raise to send nothing (what another
        thread's answer meanwhile made pointless, e.g. a refused token)."""

    def token_rejected(self, spec: RequestSpec) -> bool:
        """A 401 on `spec`: drop the token `prepare` used and return True to retry once at once with a new one
        (sources with refreshable tokens); False keeps the AUTH error final."""
        return False

    def auth_refused(self, spec: RequestSpec, error: ApiError) -> None:
        """Called once when `spec` ends in an AUTH error that is final (after any `token_rejected` retry), before
        it is raised: sources mark their stored token refused at once, so status, checks and alerts agree."""

    def error_details(self, response: requests.Response) -> tuple[str, int | str | None, int | str | None]:
        """(message, code, subcode) from an error body: JSON `error{message,code,error_subcode}`,
        `error`+`error_description`, `message`, else a snippet of the text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                return (
                    str(err.get("message") or err.get("status") or ""),
                    err.get("code"),
                    err.get("error_subcode"),
                )
            if isinstance(err, str):
                return (f"{err}: {body['error_description']}" if body.get("error_description") else err), None, None
            if body.get("message"):
                return str(body["message"]), body.get("code"), None
        text = " ".join(response.text.split())
        if "<html" in text[:500].lower():
            title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
            return f"HTML page{': ' + title.group(1).strip() if title else ''}", None, None
        return text[:200], None, None

    # ---- requests ----------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        if _ABSOLUTE.match(path_or_url):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
    ) -> requests.Response:
        spec = RequestSpec(method.upper(), path_or_url, params, json, headers)
        return self._send(spec, scope, parse_json=False)[0]

    def request_json(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
    ) -> Any:
        """Like `request`, but the decoded JSON; a cut JSON body is retried like any transient error."""
        spec = RequestSpec(method.upper(), path_or_url, params, json, headers)
        return self._send(spec, scope, parse_json=True)[1]

    def get_json(
        self,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
    ) -> Any:
        return self.request_json("GET", path_or_url, params=params, headers=headers, scope=scope)

    def send(self, spec: RequestSpec, *, scope: str | None = None) -> Any:
        """Send a RequestSpec, return its JSON payload."""
        return self._send(spec, scope, parse_json=True)[1]

    def paginate(
        self,
        first: RequestSpec,
        strategy: PagingStrategy,
        *,
        scope: str | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Yield page payloads lazily (one page in memory at a time) until the strategy says stop."""
        spec: RequestSpec | None = first
        pages = 0
        while spec is not None:
            if max_pages is not None and pages >= max_pages:
                return
            payload = self.send(spec, scope=scope)
            pages += 1
            yield payload
            following = strategy.next_request(spec, payload)
            if following == spec:
                raise ApiError(
                    ErrorKind.BAD_PAYLOAD,
                    f"paging did not advance after page {pages}",
                    source=self.source,
                    scope=scope,
                    method=spec.method,
                    url=self.url_for(spec.url),
                )
            spec = following

    def paginate_rows(
        self,
        first: RequestSpec,
        strategy: PagingStrategy,
        *,
        scope: str | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        for payload in self.paginate(first, strategy, scope=scope, max_pages=max_pages):
            yield from strategy.rows(payload)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the retry loop ----------------------------------------------------------------------

    def _send(self, spec: RequestSpec, scope: str | None, parse_json: bool) -> tuple[requests.Response, Any]:
        try:
            return self._attempts(spec, scope, parse_json)
        except ApiError as error:
            if error.kind is ErrorKind.AUTH:
                self.auth_refused(spec, error)
            raise

    def _attempts(self, spec: RequestSpec, scope: str | None, parse_json: bool) -> tuple[requests.Response, Any]:
        started = self.clock()
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            current = self.prepare(spec)
            url = self.url_for(current.url)
            _register_secrets(current)
            response: requests.Response | None = None
            payload: Any = None
            t0 = time.perf_counter()
            with self._turn():
                with self._lock:  # counted once sent (admitted)
                    self.calls += 1
                    self.calls_by_scope[scope] += 1
                try:
                    response = self.session.request(
                        current.method,
                        url,
                        params=current.params,
                        json=current.json,
                        headers=current.headers,
                        timeout=self.timeout,
                    )
                except requests.RequestException as exc:
                    error = _transport_error(exc, self.timeout)
                else:
                    try:
                        error = self.classify(response)
                    except ValueError:  # a source rule read a body that is not JSON: fall back to the status
                        error = ApiClient.classify(self, response) or ApiError(
                            ErrorKind.BAD_PAYLOAD, "unreadable response body", status=response.status_code
                        )
                    if error is None and parse_json:
                        payload, error = _decode_json(response)
                    if error is None:
                        self.throttle(response)  # inside the turn: the next calls see its verdict
            elapsed = time.perf_counter() - t0
            shown_url = redact(response.url if response is not None else _full_url(url, current.params))
            self.log.debug(
                "%s %s %s -> %s in %.3fs (attempt %d)",
                self.source,
                current.method,
                shown_url,
                response.status_code if response is not None else "no response",
                elapsed,
                attempt,
            )
            if error is None:
                assert response is not None
                return response, payload

            error.source = error.source or self.source
            error.scope = error.scope or scope
            error.method, error.url, error.attempts = current.method, shown_url, attempt
            if error.kind is ErrorKind.AUTH and error.status == 401 and not reauthenticated and self.token_rejected(spec):
                reauthenticated = True  # once per call: a second 401 with a fresh token is final
                self.log.info("%s %s: token rejected (401); retrying once with a new token", self.source, scope or "")
                continue
            if not error.kind.retryable:
                raise error  # outside any except block: no chained exception that could carry secrets
            # a throttle that says how long to wait is waited out, as long as it says and as often as it takes,
            # within the time budget; backoff and the attempt count bound guesses (transient errors), with a
            # ceiling against a server that keeps saying "in a second"
            told = error.kind is ErrorKind.THROTTLED and bool(error.retry_after)
            wait = error.retry_after if told else max(self.retry.backoff(attempt, self.rng), error.retry_after or 0.0)
            spent = self.clock() - started
            attempts = THROTTLED_ATTEMPTS_CEILING if told else self.retry.max_attempts
            if attempt >= attempts or spent + wait > self.retry.max_total_seconds:
                error.exhausted = True
                self.log.warning("%s; giving up (%.1fs spent)", error.describe(), spent)
                raise error
            with self._lock:
                self.retries += 1
            self.log.warning(
                "%s; retrying in %.1fs (attempt %d of %d)", error.describe(), wait, attempt, self.retry.max_attempts
            )
            if error.kind is ErrorKind.THROTTLED:
                self.hold(wait)  # the limit is the API's or the account's, not this thread's: every call waits
            else:
                self.sleep(wait)


# ---- paging strategies ---------------------------------------------------------------------


class PagingStrategy(Protocol):
    def next_request(self, request: RequestSpec, payload: Any) -> RequestSpec | None:
        """The request for the page after `payload` (which answered `request`), or None when done."""
        ...

    def rows(self, payload: Any) -> list[Any]: ...


def _dig(payload: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


@dataclass(frozen=True)
class NextUrlPaging:
    """Follow an absolute next-page URL (Meta `paging.next`, which repeats every parameter). Pages may be
    short or empty and still have a next URL: only its absence ends the listing."""

    next_path: tuple[str, ...] = ("paging", "next")
    rows_key: str = "data"

    def next_request(self, request: RequestSpec, payload: Any) -> RequestSpec | None:
        following = _dig(payload, self.next_path)
        if not following:
            return None
        return request.replace(url=str(following), params=None)

    def rows(self, payload: Any) -> list[Any]:
        return (payload or {}).get(self.rows_key) or []


@dataclass(frozen=True)
class PageNumberPaging:
    """`page`=1,2,... (Breezeway). Stops at `total_pages` when the envelope has it, else at a short or
    empty page; a bare JSON array is the whole list (no paging)."""

    page_param: str = "page"
    limit_param: str = "limit"
    rows_key: str = "results"
    total_pages_key: str = "total_pages"
    first_page: int = 1

    def next_request(self, request: RequestSpec, payload: Any) -> RequestSpec | None:
        if not isinstance(payload, dict):
            return None
        params = request.params or {}
        page = int(payload.get(self.page_param) or params.get(self.page_param) or self.first_page)
        total_pages = payload.get(self.total_pages_key)
        if total_pages is not None:
            if page >= int(total_pages):
                return None
        else:
            rows = self.rows(payload)
            limit = payload.get(self.limit_param) or params.get(self.limit_param)
            if not rows or (limit and len(rows) < int(limit)):
                return None
        return request.replace(params={**params, self.page_param: page + 1})

    def rows(self, payload: Any) -> list[Any]:
        if isinstance(payload, list):
            return payload
        return (payload or {}).get(self.rows_key) or []


@dataclass(frozen=True)
class OffsetPaging:
    """limit/offset with a total row count (GA4 runReport: in the JSON body, int64 as strings,
    `rowCount`); continues while offset + limit < total."""

    limit_param: str = "limit"
    offset_param: str = "offset"
    total_key: str = "rowCount"
    rows_key: str = "rows"
    in_body: bool = True
    as_strings: bool = True

    def next_request(self, request: RequestSpec, payload: Any) -> RequestSpec | None:
        container = dict((request.json if self.in_body else request.params) or {})
        offset = int(container.get(self.offset_param) or 0)
        limit = int(container[self.limit_param])  # the first request must set its page size
        total = int((payload or {}).get(self.total_key) or 0)
        if offset + limit >= total or not self.rows(payload):
            return None
        container[self.offset_param] = str(offset + limit) if self.as_strings else offset + limit
        return request.replace(json=container) if self.in_body else request.replace(params=container)

    def rows(self, payload: Any) -> list[Any]:
        return (payload or {}).get(self.rows_key) or []


# ---- helpers -------------------------------------------------------------------------------


def _register_secrets(spec: RequestSpec) -> None:
    # whatever credential a request carries is masked everywhere from now on, even in odd places
    for name, value in (spec.headers or {}).items():
        if name.lower() in ("authorization", "proxy-authorization", "x-api-key") and isinstance(value, str):
            match = _AUTH_VALUE.match(value)
            register_secret(match.group(1) if match else value)
    for container in (spec.params, spec.json if isinstance(spec.json, dict) else None):
        for name, value in (container or {}).items():
            if name.lower() in SENSITIVE_FIELDS and isinstance(value, str):
                register_secret(value)


def _decode_json(response: requests.Response) -> tuple[Any, ApiError | None]:
    if response.status_code == 204:
        return None, None
    try:
        return fastjson.loads(response.content), None
    except ValueError:  # orjson.JSONDecodeError and json.JSONDecodeError are both ValueErrors
        pass
    text = response.text.strip()
    size = len(response.content)
    if not text or text[0] in "{[":
        # a cut-off body (proxy, dropped connection with a matching length): try again
        return None, ApiError(ErrorKind.TRANSIENT, f"truncated JSON body ({size} bytes)", status=response.status_code)
    content_type = response.headers.get("Content-Type", "no content type")
    return None, ApiError(
        ErrorKind.BAD_PAYLOAD, f"expected JSON, got {content_type} ({size} bytes)", status=response.status_code
    )


def _transport_error(exc: requests.RequestException, timeout: tuple[float, float]) -> ApiError:
    if isinstance(exc, requests.Timeout):
        what = f"timed out (connect {timeout[0]:g}s / read {timeout[1]:g}s)"
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        what = f"response body cut off ({type(exc).__name__})"
    elif isinstance(exc, requests.ConnectionError):
        root = _root_cause(exc)
        what = f"connection failed ({type(root).__name__}: {root})"
    else:  # invalid URL, bad header...: a bug or bad configuration, retrying cannot help
        return ApiError(ErrorKind.BAD_REQUEST, f"{type(exc).__name__}: {exc}")
    return ApiError(ErrorKind.TRANSIENT, what[:400])


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error wrapped by requests/urllib3 (e.g. RemoteDisconnected, ConnectionRefusedError)."""
    for _ in range(10):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc
