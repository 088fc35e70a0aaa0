"""`ops.platform_tokens`: the one token store, encrypted at rest, refreshed under a row lock.

Secrets are AES-GCM ciphertext (nonce || ciphertext) bound to their (platform, scope, field) as
associated data, so a ciphertext copied to another row does not decrypt. The key comes from
ADPIPELINE_TOKEN_KEY (urlsafe base64 of 32 bytes) or, for the embedded warehouse only, an
auto-generated 0600 key file under ADPIPELINE_HOME. Each row records its key id; older keys listed in
ADPIPELINE_TOKEN_KEYS_OLD (comma separated) still decrypt, so keys can be rotated.

Rows are keyed by (platform, scope, api): `api` is the origin (scheme://host:port) of the base URL the token
is used with, so a token is only ever sent to the host that issued it (a sandbox token never reaches
graph.facebook.com), and the sandbox's and production's tokens coexist. A token an API refuses is marked `expired`/`invalid` at once (`mark_rejected`),
so `adpipeline tokens status`, the token checks and their alerts say so before any token job runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.rows import dict_row

from adpipeline import clock
from adpipeline.http.redact import register_secret
from adpipeline.warehouse.db import connect
from adpipeline.warehouse.embedded import adpipeline_home, is_embedded, secret_file, warehouse_url

KEY_ENV = "ADPIPELINE_TOKEN_KEY"
OLD_KEYS_ENV = "ADPIPELINE_TOKEN_KEYS_OLD"
KEY_FILE = "token.key"


def api_origin(url: str) -> str:
    """The API a token belongs to: scheme://host[:port] of its base URL, lowercased."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class TokenStoreError(RuntimeError):
    """The token store cannot encrypt or decrypt (missing or wrong key)."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"adpipeline-token-key:" + key).hexdigest()[:12]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise TokenStoreError(f"{where}: a token key must be urlsafe base64 of 32 bytes")
    return key


class Keyring:
    def __init__(self, current: bytes, older: list[bytes] = ()):  # type: ignore[assignment]
        self.current_id = _key_id(current)
        self._keys = {_key_id(k): k for k in [*older, current]}

    @classmethod
    def from_environment(cls, warehouse: str) -> Keyring:
        older = [_decode_key(k, OLD_KEYS_ENV) for k in os.environ.get(OLD_KEYS_ENV, "").split(",") if k.strip()]
        if os.environ.get(KEY_ENV):
            return cls(_decode_key(os.environ[KEY_ENV], KEY_ENV), older)
        if not is_embedded(warehouse):
            raise TokenStoreError(
                f"set {KEY_ENV} to encrypt tokens: a key file on local disk is only accepted for the embedded warehouse"
            )
        return cls(_key_file(adpipeline_home() / KEY_FILE), older)

    def encrypt(self, plaintext: str | None, aad: bytes) -> bytes | None:
        if plaintext is None:
            return None
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._keys[self.current_id]).encrypt(nonce, plaintext.encode(), aad)

    def decrypt(self, blob: bytes | None, key_id: str, aad: bytes) -> str | None:
        if blob is None:
            return None
        key = self._keys.get(key_id)
        if key is None:
            raise TokenStoreError(f"token encrypted with key {key_id}, which is not configured ({KEY_ENV}/{OLD_KEYS_ENV})")
        blob = bytes(blob)
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad).decode()

    def fingerprint(self, value: str) -> str:
        """A keyed hash of an environment token: tells 'changed' without storing the token."""
        return hmac.new(self._keys[self.current_id], value.encode(), "sha256").hexdigest()[:32]


def _key_file(path: Path) -> bytes:
    """The embedded warehouse's key: made on first use, by whichever process gets there first."""
    return _decode_key(secret_file(path, lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()), str(path))


@dataclass
class Token:
    """A decrypted token row. `repr` never shows the secrets."""

    platform: str
    scope: str
    api: str | None = None  # the origin of the API it was issued by (None: stored before 0010, unknown)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str | None = None
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    data_access_expires_at: datetime | None = None
    scopes: list[str] | None = None
    never_expires: bool = False
    env_fingerprint: str | None = field(default=None, repr=False)
    status: str = "valid"
    last_refreshed_at: datetime | None = None
    last_refresh_attempt_at: datetime | None = None
    last_refresh_succeeded: bool | None = None
    last_checked_at: datetime | None = None
    refresh_count: int = 0
    generation_count: int = 0
    last_error: str | None = None
    updated_at: datetime | None = None


_SECRET_FIELDS = ("access_token", "refresh_token")
_KEY_FIELDS = ("platform", "scope", "api")
_PLAIN_FIELDS = [f.name for f in fields(Token) if f.name not in (*_SECRET_FIELDS, *_KEY_FIELDS, "updated_at")]
UNKNOWN_API = ""  # the key of a row stored before the API was recorded (0010): never handed out, only adopted


def _state(row: dict) -> dict:
    """A row's plain columns as Token fields ('' api -> None)."""
    return {name: row[name] for name in ["platform", "scope", "updated_at", *_PLAIN_FIELDS]} | {"api": row["api"] or None}


class TokenStore:
    def __init__(self, url: str | None = None, keyring: Keyring | None = None):
        self.url = url or warehouse_url()
        self.keyring = keyring or Keyring.from_environment(self.url)

    def _aad(self, platform: str, scope: str, name: str) -> bytes:
        return f"{platform}|{scope}|{name}".encode()

    def _from_row(self, row: dict) -> Token:
        secrets_ = {
            name: self.keyring.decrypt(row[f"{name}_enc"], row["key_id"], self._aad(row["platform"], row["scope"], name))
            for name in _SECRET_FIELDS
        }
        for value in secrets_.values():
            register_secret(value)  # from now on masked in every log line, exception and metadata value
        return Token(**_state(row), **secrets_)

    def _write(self, conn: psycopg.Connection, token: Token) -> None:
        for name in _SECRET_FIELDS:
            register_secret(getattr(token, name))
        enc = {
            f"{name}_enc": self.keyring.encrypt(getattr(token, name), self._aad(token.platform, token.scope, name))
            for name in _SECRET_FIELDS
        }
        values = {"platform": token.platform, "scope": token.scope, "api": token.api or UNKNOWN_API,
                  "key_id": self.keyring.current_id, **enc, **{name: getattr(token, name) for name in _PLAIN_FIELDS}}
        cols = ", ".join(values)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in values if c not in _KEY_FIELDS)
        conn.execute(
            f"INSERT INTO ops.platform_tokens ({cols}) VALUES ({', '.join(['%s'] * len(values))})"
            f" ON CONFLICT (platform, scope, api) DO UPDATE SET {updates}, updated_at = %s",
            [*values.values(), clock.now()],
        )

    def get(self, platform: str, scope: str, api: str | None = None) -> Token | None:
        """The token stored for `api` (None: the row of unknown API, stored before 0010); None when there is none."""
        with connect(self.url, row_factory=dict_row) as conn:
            row = conn.execute(
                "SELECT * FROM ops.platform_tokens WHERE platform = %s AND scope = %s AND api = %s",
                (platform, scope, api or UNKNOWN_API),
            ).fetchone()
        return None if row is None else self._from_row(row)

    def all(self) -> list[Token]:
        with connect(self.url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM ops.platform_tokens ORDER BY platform, scope, api").fetchall()
        return [self._from_row(r) for r in rows]

    def put(self, token: Token) -> None:
        with connect(self.url) as conn:
            self._write(conn, token)

    @contextmanager
    def locked(self, platform: str, scope: str, api: str | None = None, *,
               adopt_fingerprint: str | None = None) -> Iterator[tuple[Token, Callable[[Token], None]]]:
        """Hold the row lock of (platform, scope, api) for a refresh: yields (current token, save).

        Two runs refreshing the same rotating refresh token serialise here; the second sees the token
        the first saved and can decide it is fresh enough. Everything commits on exit, or rolls back.
        Only `api`'s row is ever read, so another API's secrets are never handed out for it. A row of
        unknown API (stored before 0010) whose environment fingerprint is `adopt_fingerprint` (the operator
        configured that very token for this API) becomes `api`'s row, unless `api` has one already.
        """
        key = (platform, scope, api or UNKNOWN_API)
        with connect(self.url, row_factory=dict_row) as conn:
            if api and adopt_fingerprint:
                conn.execute(
                    "UPDATE ops.platform_tokens SET api = %s WHERE platform = %s AND scope = %s AND api = %s"
                    " AND env_fingerprint = %s AND NOT EXISTS (SELECT 1 FROM ops.platform_tokens"
                    " WHERE platform = %s AND scope = %s AND api = %s)",
                    (api, platform, scope, UNKNOWN_API, adopt_fingerprint, *key),
                )
            conn.execute(
                "INSERT INTO ops.platform_tokens (platform, scope, api) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", key
            )
            row = conn.execute(
                "SELECT * FROM ops.platform_tokens WHERE platform = %s AND scope = %s AND api = %s FOR UPDATE", key
            ).fetchone()
            if row["key_id"] is None:
                row["key_id"] = self.keyring.current_id
            yield self._from_row(row), lambda token: self._write(conn, replace(token, api=api or None))

    def mark_rejected(self, platform: str, scope: str, rejected_token: str | None, *, status: str, error: str,
                      api: str | None = None) -> bool:
        """The API refused `rejected_token`: record `status` ('expired' | 'invalid') and why, at once, unless
        the row holds another token by now (a newer one another run stored). Returns whether it was marked."""
        if status not in ("expired", "invalid"):
            raise ValueError(f"a rejected token is expired or invalid, not {status!r}")
        with self.locked(platform, scope, api) as (token, save):
            if not token.access_token or token.access_token != rejected_token:
                return False
            save(replace(token, status=status, last_error=error[:1000], last_checked_at=clock.now()))
            return True

    def seed_from_environment(self, platform: str, scope: str, env_value: str | None, api: str | None = None,
                              **attrs) -> Token | None:
        """A token from the environment seeds the store; after that the store's (newer) token wins
        until the environment value changes. Returns the token to use (None: none for this API)."""
        fingerprint = self.keyring.fingerprint(env_value) if env_value else None
        with self.locked(platform, scope, api, adopt_fingerprint=fingerprint) as (current, save):
            if env_value:
                if current.access_token is None or current.env_fingerprint != fingerprint:
                    current = replace(current, access_token=env_value, env_fingerprint=fingerprint,
                                      status="valid", last_error=None, **attrs)
                    save(current)
            return current if current.access_token else None


def token_states(conn: psycopg.Connection, platform: str | None = None, api: str | None = None) -> list[Token]:
    """Token rows WITHOUT their secrets (no key needed): for checks, `tokens status` and doctor.
    Given `api`, only the tokens stored for that API (the one in use)."""
    columns = ", ".join(["platform", "scope", "api", "updated_at", *_PLAIN_FIELDS])
    where, params = [], []
    for column, value in (("platform", platform), ("api", api)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {columns} FROM ops.platform_tokens {clause} ORDER BY platform, scope, api", params)
        return [Token(**_state(row)) for row in rows.fetchall()]
