"""The Dagster resource giving assets a Breezeway client per region."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg

from adpipeline import clock
from adpipeline.config import BreezewayRegion
from adpipeline.http import RetryPolicy
from adpipeline.sources.breezeway.auth import BreezewayAuth, Credentials
from adpipeline.sources.breezeway.client import BreezewayClient
from adpipeline.warehouse.tokens import TokenStore

API_URL_ENV = "BREEZEWAY_API_URL"
DEFAULT_API_URL = "https://api.breezeway.io"


def _env(name: str) -> str | None:
    return dg.EnvVar(name).get_value() or None


class BreezewayResource(dg.ConfigurableResource):
    """Breezeway API access. Each region's client id/secret come from the environment variables the
    sources config names (read when a run needs them, never at import); tokens live in the token store."""

    api_url: str | None = None  # None -> $BREEZEWAY_API_URL, else the real API
    page_size: int = 100
    max_concurrency: int = 4  # requests in flight per region (hundreds get HTML 403s from the proxy)
    refresh_margin_seconds: int = 300  # refresh this long before the access token's `exp`
    auth_min_interval_seconds: float = 60.0  # the auth endpoints allow 1 request per minute
    max_retry_seconds: float = 300.0

    def base_url(self) -> str:
        return (self.api_url or _env(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")

    def credentials(self, region: BreezewayRegion) -> tuple[Credentials | None, str]:
        """(credentials, or None and a sentence naming what is missing)."""
        client_id, secret = _env(region.client_id_var), _env(region.client_secret_var)
        missing = [name for name, value in ((region.client_id_var, client_id), (region.client_secret_var, secret))
                   if not value]
        if missing:
            return None, f"client credentials are not configured: set {' and '.join(missing)}"
        assert client_id and secret
        return Credentials(client_id, secret), ""

    @contextmanager
    def client(self, region: BreezewayRegion, store: TokenStore) -> Iterator[BreezewayClient]:
        client = BreezewayClient(
            self.base_url(), region.code, page_size=self.page_size, max_concurrency=self.max_concurrency,
            retry=RetryPolicy(max_total_seconds=self.max_retry_seconds),
        )
        credentials, missing = self.credentials(region)
        client.auth = BreezewayAuth(
            region.code, credentials, store, client, missing_credentials=missing, clock=clock.now,
            margin=timedelta(seconds=self.refresh_margin_seconds),
            min_interval=timedelta(seconds=self.auth_min_interval_seconds),
        )
        try:
            yield client
        finally:
            client.close()
