"""Shared HTTP machinery for every source: one client (retry, classification, paging), one error
taxonomy, one redaction. Sources subclass `ApiClient`; nothing here is re-implemented per source."""

from adpipeline.http.client import (
    ApiClient,
    NextUrlPaging,
    OffsetPaging,
    PageNumberPaging,
    PagingStrategy,
    RequestSpec,
    RetryPolicy,
    parse_retry_after,
)
from adpipeline.http.errors import (
    ApiError,
    ApiPermissionError,
    AuthError,
    BadPayloadError,
    BadRequestError,
    ErrorKind,
    ThrottledError,
    TransientError,
)
from adpipeline.http.redact import (
    RedactingFilter,
    clear_registered_secrets,
    install_log_redaction,
    redact,
    register_secret,
)

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiPermissionError",
    "AuthError",
    "BadPayloadError",
    "BadRequestError",
    "ErrorKind",
    "NextUrlPaging",
    "OffsetPaging",
    "PageNumberPaging",
    "PagingStrategy",
    "RedactingFilter",
    "RequestSpec",
    "RetryPolicy",
    "ThrottledError",
    "TransientError",
    "clear_registered_secrets",
    "install_log_redaction",
    "parse_retry_after",
    "redact",
    "register_secret",
]
