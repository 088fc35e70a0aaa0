"""The one error taxonomy every source maps its API's failures onto."""

from __future__ import annotations

import enum
from typing import Any

from adpipeline.http.redact import redact


class ErrorKind(enum.Enum):
    AUTH = "auth"
    PERMISSION = "permission"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    BAD_REQUEST = "bad_request"
    BAD_PAYLOAD = "bad_payload"

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.THROTTLED, ErrorKind.TRANSIENT)


_WHAT = {
    ErrorKind.AUTH: "authentication failed",
    ErrorKind.PERMISSION: "permission denied",
    ErrorKind.THROTTLED: "rate limited",
    ErrorKind.TRANSIENT: "temporary failure",
    ErrorKind.BAD_REQUEST: "request rejected",
    ErrorKind.BAD_PAYLOAD: "unusable response",
}
_ACTION = {
    ErrorKind.AUTH: "re-authenticate; not retried",
    ErrorKind.PERMISSION: "grant the missing access; not retried",
    ErrorKind.THROTTLED: "wait for the limit to reset, then rerun",
    ErrorKind.TRANSIENT: "rerun later",
    ErrorKind.BAD_REQUEST: "fix the request or its configuration; not retried",
    ErrorKind.BAD_PAYLOAD: "check for an API change; not retried",
}


class ApiError(Exception):
    """A classified API failure. `ApiError(kind, ...)` returns the subclass for `kind`
    (AuthError, ThrottledError, ...), so callers can catch either the base or one kind.

    Everything textual is redacted on the way in and again on the way out (secrets registered later).
    """

    kind: ErrorKind

    def __new__(cls, kind: ErrorKind, *args: Any, **kwargs: Any) -> ApiError:
        if cls is ApiError:
            cls = _BY_KIND.get(kind, ApiError)
        return super().__new__(cls)

    def __init__(
        self,
        kind: ErrorKind,
        message: str = "",
        *,
        source: str = "",
        scope: str | None = None,
        status: int | None = None,
        code: int | str | None = None,
        subcode: int | str | None = None,
        retry_after: float | None = None,
        method: str | None = None,
        url: str | None = None,
        attempts: int = 1,
        exhausted: bool = False,
    ) -> None:
        self.kind = kind
        self.message = redact(message)
        self.source = source
        self.scope = scope
        self.status = status
        self.code = code
        self.subcode = subcode
        self.retry_after = retry_after
        self.method = method
        self.url = redact(url) if url else None
        self.attempts = attempts
        self.exhausted = exhausted  # a retryable error that ran out of attempts or time
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def __str__(self) -> str:
        action = _ACTION[self.kind]
        if self.kind is ErrorKind.THROTTLED and self.retry_after:
            action = f"wait for the limit to reset (the API asks for {self.retry_after:g}s), then rerun"
        if self.kind.retryable and self.exhausted:
            action = f"retries exhausted; {action}"
        return redact(f"{self.describe()} — {action}")

    def describe(self) -> str:
        """What happened, without the action: "meta act_1: rate limited on GET ... (HTTP 429)"."""
        who = " ".join(p for p in (self.source, self.scope) if p) or "api"
        ids = []
        if self.status is not None:
            ids.append(f"HTTP {self.status}")
        if self.code is not None:
            ids.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode is not None else ""))
        details = ": ".join(p for p in (", ".join(ids), self.message[:1000]) if p)
        what = _WHAT[self.kind]
        if self.method and self.url:
            what += f" on {self.method} {self.url}"
        if details:
            what += f" ({details})"
        if self.attempts > 1:
            what += f" after {self.attempts} attempts"
        return redact(f"{who}: {what}")

    def __repr__(self) -> str:
        return redact(
            f"{type(self).__name__}(kind={self.kind.value}, source={self.source!r}, scope={self.scope!r}, "
            f"status={self.status!r}, error_code={self.code!r}, retry_after={self.retry_after!r}, "
            f"message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor: pickle through a helper (Dagster may ship errors across processes)
        return (_rebuild, (self.kind, self.message, self._fields()))

    def _fields(self) -> dict[str, Any]:
        names = ("source", "scope", "status", "code", "subcode", "retry_after", "method", "url", "attempts", "exhausted")
        return {n: getattr(self, n) for n in names}


def _rebuild(kind: ErrorKind, message: str, fields: dict[str, Any]) -> ApiError:
    return ApiError(kind, message, **fields)


class AuthError(ApiError):
    pass


class ApiPermissionError(ApiError):
    pass


class ThrottledError(ApiError):
    pass


class TransientError(ApiError):
    pass


class BadRequestError(ApiError):
    pass


class BadPayloadError(ApiError):
    pass


_BY_KIND: dict[ErrorKind, type[ApiError]] = {
    ErrorKind.AUTH: AuthError,
    ErrorKind.PERMISSION: ApiPermissionError,
    ErrorKind.THROTTLED: ThrottledError,
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.BAD_REQUEST: BadRequestError,
    ErrorKind.BAD_PAYLOAD: BadPayloadError,
}
