"""Minimal HS256 JWTs for the sandbox's Breezeway auth (the real API issues JWTs with an `exp` claim)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], key: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def decode(token: str, key: bytes) -> dict[str, Any]:
    """Claims of a token signed with `key` (expiry is the caller's business: it knows the sandbox clock)."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise InvalidToken("Error decoding signature.")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError) as exc:
        raise InvalidToken("Error decoding signature.") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("Error decoding signature.")
    return claims
