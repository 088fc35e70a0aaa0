"""Secret redaction for anything that may leave the process: log records, exception messages, metadata.

Two layers: patterns (sensitive query/form/JSON fields, Authorization values, JWT/OAuth-looking tokens,
PEM private keys) and a process-wide registry of known secret values (`register_secret`), replaced
wherever they appear, whatever the surrounding format.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

SENSITIVE_FIELDS = (
    "access_token", "refresh_token", "id_token", "client_secret", "fb_exchange_token", "input_token",
    "appsecret_proof", "api_key", "apikey", "key", "password", "passwd", "secret", "code", "assertion",
    "private_key", "private_key_id", "token",
)  # fmt: skip
_FIELDS = "|".join(sorted(SENSITIVE_FIELDS, key=len, reverse=True))
# in JSON, "code" and "key" are mostly ordinary fields (error codes, type codes): mask only as parameters
_JSON_FIELDS = "|".join(sorted(set(SENSITIVE_FIELDS) - {"code", "key"}, key=len, reverse=True))

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM blocks (service-account private keys), also with JSON-escaped newlines
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
    # query strings / form bodies: access_token=..., also percent-encoded inside another URL (a `next` link)
    # Python reprs / keyword arguments: access_token='...' (not key='...': ZoneInfo(key='UTC') is harmless)
    (re.compile(rf"(?i)(?<![A-Za-z0-9_])({_JSON_FIELDS})=([\"'])(?!\*\*\*\2).*?(?<!\\)\2"), rf"\1=\2{MASK}\2"),
    (re.compile(rf"(?i)(?:(?<![A-Za-z0-9_])|(?<=%3F)|(?<=%26))({_FIELDS})=(?!None\b)[^&\s#\"'<>,)]+"), rf"\1={MASK}"),
    (re.compile(rf"(?i)(?:(?<![A-Za-z0-9_])|(?<=%3F)|(?<=%26))({_FIELDS})%3D.*?(?=%26|&|\s|$|[\"'<>])"), rf"\1%3D{MASK}"),
    # JSON / Python-repr string values: "access_token": "...", 'client_secret': '...'
    (re.compile(rf"(?i)([\"']({_JSON_FIELDS})[\"']\s*:\s*)([\"']).*?(?<!\\)\3"), rf"\1\3{MASK}\3"),
    # Authorization header values, keeping the scheme: "Authorization: JWT ***"
    (
        re.compile(r"(?i)([\"']?(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|jwt|basic|oauth|token)\s+)?[^\s\"',}]+"),
        lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|jwt)\s+[A-Za-z0-9\-._~+/]{16,}=*"), rf"\1 {MASK}"),
    # token shapes: JWTs (eyJ...), Google access tokens (ya29.), Meta tokens (EAA...)
    (re.compile(r"eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*){0,2}"), MASK),
    (re.compile(r"\bya29\.[A-Za-z0-9_\-.]+"), MASK),
    (re.compile(r"\bEAA[A-Za-z0-9]{20,}"), MASK),
    # the password of a connection URL (postgresql://user:password@host), whoever's it is
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]+:)(?!\*\*\*@)[^@\s/]+@"), rf"\1{MASK}@"),
]

_lock = threading.Lock()
_secrets: set[str] = set()
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words and numbers


def register_secret(value: str | None) -> None:
    """Mask this exact value (and its URL-encoded forms) wherever it appears from now on."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def clear_registered_secrets() -> None:
    """For tests only: forget every registered value."""
    with _lock:
        _secrets.clear()


def redact(text: Any) -> str:
    """`text` (anything, via str()) with every known secret and secret-looking value masked."""
    if text is None:
        return ""
    out = text if isinstance(text, str) else str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # longest first: a secret may contain another
    for secret in known:
        if secret in out:
            out = out.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def _clean_arg(arg: Any) -> Any:
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    text = str(arg)
    cleaned = redact(text)
    # keep the original object (and its type for %d etc.) unless it actually carried a secret
    return arg if cleaned == text else cleaned


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception text and stack info. Never drops records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_adpipeline_redacted", False):
            return True
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif record.msg is not None and not isinstance(record.msg, (int, float)):
            record.msg = _clean_arg(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            # pre-render the traceback so handlers print the redacted copy (requests errors embed URLs)
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._adpipeline_redacted = True
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process at creation, so every handler (including ones added
    later, such as pytest's caplog or Dagster's) only ever sees masked text. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()
    redacting = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
