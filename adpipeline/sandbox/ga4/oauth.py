"""The sandbox's stand-in for Google's OAuth token endpoint (`token_uri` of GA4 credentials).

Two principals exist per sandbox process: a service account whose RSA key is generated at start (the
public half stays here to verify the JWT assertions `google-auth` signs with it) and an OAuth "authorized
user" whose client secret and refresh token derive from the seed. Neither is a real secret. Either can be
revoked through the admin API; a revoked one gets `invalid_grant`, as Google answers. Revoking the service
account deletes the key made at start; a key added later (`new_key`, the console's "Add key") still works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # google-auth always signs this audience
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_SECONDS = 3599
MAX_ASSERTION_SECONDS = 3600


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(seed: int, name: str, length: int = 32) -> str:
    return hashlib.sha256(f"{seed}:ga4.oauth:{name}".encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Principals:
    seed: int
    project_id: str
    client_email: str
    private_key_id: str
    private_key_pem: str
    public_key: rsa.RSAPublicKey
    client_id: str
    client_secret: str
    refresh_token: str

    @classmethod
    def create(cls, seed: int) -> Principals:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cls(
            seed=seed,
            project_id="adpipeline-sandbox",
            client_email="ga4-reader@adpipeline-sandbox.iam.gserviceaccount.com",
            private_key_id=_derive(seed, "private_key_id", 40),
            private_key_pem=pem,
            public_key=key.public_key(),
            client_id=f"{_derive(seed, 'client_id', 12)}-sandbox.apps.googleusercontent.com",
            client_secret="GOCSPX-sandbox-" + _derive(seed, "client_secret", 20),
            refresh_token="1//sandbox-" + _derive(seed, "refresh_token", 40),
        )

    def service_account_info(self, token_uri: str, key: tuple[str, str] | None = None) -> dict[str, str]:
        """The key file's JSON: of the key made at start, or of `key` (key id, private key PEM)."""
        key_id, pem = key or (self.private_key_id, self.private_key_pem)
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": _derive(self.seed, "sa_client_id", 21),
            "token_uri": token_uri,
        }

    def authorized_user_info(self, token_uri: str) -> dict[str, str]:
        return {
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "token_uri": token_uri,
        }


class TokenIssuer:
    """Issues and validates access tokens. `store` is the emulation's storage (emptied by a sandbox reset,
    which also lifts revocations and invalidates issued tokens)."""

    def __init__(self, principals: Principals, store: dict[str, Any]) -> None:
        self.principals = principals
        self.store = store
        self._lock = threading.Lock()

    def _tokens(self) -> dict[str, tuple[str, datetime]]:
        return self.store.setdefault("access_tokens", {})

    def revoked(self) -> set[str]:
        return self.store.setdefault("revoked", set())

    def revoke(self, principal: str, revoked: bool = True) -> None:
        """`service_account` or `authorized_user` (or the client email / refresh token itself);
        `revoked=False` lets it in again."""
        p = self.principals
        name = {p.client_email: "service_account", p.refresh_token: "authorized_user"}.get(principal, principal)
        if name not in ("service_account", "authorized_user"):
            raise ValueError(f"unknown principal {principal!r}")
        if not revoked:
            self.revoked().discard(name)
            return
        self.revoked().add(name)
        if name == "authorized_user":  # revoking a grant also kills the access tokens minted from it
            tokens = self._tokens()
            for token in [t for t, (who, _) in tokens.items() if who == name]:
                del tokens[token]

    def new_key(self) -> tuple[str, str]:
        """A new key for the service account, as an operator adds one after a key was deleted: (key id, private
        key PEM). Only its public half stays here."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with self._lock:
            keys = self.store.setdefault("keys", {})
            key_id = _derive(self.principals.seed, f"private_key_id:{len(keys) + 1}", 40)
            keys[key_id] = key.public_key()
        return key_id, pem

    def exchange(self, form_body: bytes, request_url: str, now: datetime) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            principal, scope = self._jwt_bearer(form.get("assertion", ""), request_url)
        elif grant == "refresh_token":
            principal, scope = self._refresh(form), SCOPE
        else:
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
        with self._lock:
            serial = self.store.get("serial", 0) + 1
            self.store["serial"] = serial
            token = "ya29.sandbox-" + _derive(self.principals.seed, f"access:{serial}", 48)
            self._tokens()[token] = (principal, now + timedelta(seconds=ACCESS_TOKEN_SECONDS))
        return {"access_token": token, "expires_in": ACCESS_TOKEN_SECONDS, "scope": scope, "token_type": "Bearer"}

    def _jwt_bearer(self, assertion: str, request_url: str) -> tuple[str, str]:
        try:
            head_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except (ValueError, TypeError):
            raise OAuthError(400, "invalid_request", "Invalid JWT: malformed assertion.") from None
        p = self.principals
        if header.get("alg") != "RS256":
            raise OAuthError(400, "invalid_grant", "Invalid JWT: unsupported algorithm.")
        if claims.get("iss") != p.client_email:
            raise OAuthError(400, "invalid_grant", "Invalid grant: account not found")
        added = self.store.get("keys", {})  # keys added after start, by key id (google-auth sends it as `kid`)
        public_key = added.get(header.get("kid"), p.public_key)
        try:
            public_key.verify(signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
        if "service_account" in self.revoked() and header.get("kid") not in added:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")  # Google's answer for a deleted key
        audience = str(claims.get("aud", "")).split("?")[0].rstrip("/")
        if audience not in (GOOGLE_TOKEN_URI, request_url.split("?")[0].rstrip("/")):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: audience must be the token URI.")
        try:
            lifetime = float(claims["exp"]) - float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: iat and exp are required.") from None
        # the sandbox clock is not the client's clock, so only the lifetime is checked, not the instant
        if not 0 < lifetime <= MAX_ASSERTION_SECONDS:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: expiration must be at most one hour after iat.")
        scopes = str(claims.get("scope", "")).split()
        if SCOPE not in scopes and "https://www.googleapis.com/auth/analytics" not in scopes:
            raise OAuthError(400, "invalid_scope", "The analytics.readonly scope is required.")
        return "service_account", " ".join(scopes)

    def _refresh(self, form: dict[str, str]) -> str:
        p = self.principals
        if form.get("client_id") != p.client_id or form.get("client_secret") != p.client_secret:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if form.get("refresh_token") != p.refresh_token or "authorized_user" in self.revoked():
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        return "authorized_user"

    def principal_for(self, authorization: str | None, now: datetime) -> str | None:
        """The principal of a valid `Bearer` access token, else None (answer 401)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        entry = self._tokens().get(authorization[7:].strip())
        if entry is None or entry[1] <= now:
            return None
        return entry[0]
